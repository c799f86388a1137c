// Package cli turns the publisher's command line into calls of the repo,
// sign and serve packages.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/internal/config"
	"github.com/kiln-build/kiln/internal/logging"
	"github.com/kiln-build/kiln/publisher/daemon"
	"github.com/kiln-build/kiln/publisher/push"
	"github.com/kiln-build/kiln/publisher/repo"
	"github.com/kiln-build/kiln/publisher/serve"
	"github.com/kiln-build/kiln/publisher/sign"
)

// Config is the publisher's configuration file.
type Config struct {
	Root string `yaml:"root"`
	Log  struct {
		Level string `yaml:"level"`
		JSON  bool   `yaml:"json"`
	} `yaml:"log"`
	Signing struct {
		KeyFile        string `yaml:"key_file"`
		PassphraseFile string `yaml:"passphrase_file"`
		PassphraseEnv  string `yaml:"passphrase_env"`
	} `yaml:"signing"`
	Repositories []repo.Config `yaml:"repositories"`
	Serve        serve.Config  `yaml:"serve"`
	// Mirrors receive every published repository by rsync (`publisher
	// push`, `publish --push`, and after each publish by `serve`).
	Mirrors []push.Mirror `yaml:"mirrors"`
}

// ErrUsage is wrapped by errors about the command line itself.
var ErrUsage = errors.New("usage")

func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

const topUsage = `Usage: publisher COMMAND [flags]

Keeps signed Debian and RPM repositories with the operator's own OpenPGP key.

Commands:
  include   --repo NAME FILE...        add .deb, .udeb, .dsc (with its files) or .rpm files
  remove    --repo NAME SPEC...        remove packages: NAME, NAME=VERSION or NAME/ARCH=VERSION
  publish   --repo NAME                write the signed indexes and switch them live atomically
  list      [--repo NAME] [--json]     list the repositories, or a repository's packages
  snapshot  create --repo NAME SNAP    record an immutable snapshot of a repository (and its base)
  snapshot  list [--repo NAME] [--json]
  snapshot  publish SNAP               publish a snapshot under public/snapshots/SNAP
  key       show                       print the public key and its fingerprint for customers
  push      --repo NAME [--mirror M]   rsync a published repository to the configured mirrors
  gc        [--grace D] [--dry-run] [--json]  remove stored files no package or snapshot references
  serve     [--listen ADDR] [--dev]    serve the gRPC API for the coordinator

include, remove, publish, list and push take --base to act on the
repository's base instead (NAME-base: the upstream packages its builds
installed, kept beside it so that the release rebuilds from itself alone).

Every command takes --config FILE, or for a quick start without one:
  --root DIR --key FILE [--passphrase-file F] and, creating a repository on
  its first include, --format deb|rpm [--suite S] [--component C]
  [--rpm-signatures header+payload|header].

Run "publisher COMMAND --help" for a command's flags.
`

// common holds the flags every command has.
type common struct {
	configFile, root, key, passFile, passEnv, logLevel string
	format, suite, component, rpmSignatures            string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.configFile, "config", "", "configuration `file` (YAML)")
	fs.StringVar(&c.root, "root", "", "publisher root `directory` (store, objects, public/)")
	fs.StringVar(&c.key, "key", "", "armored OpenPGP private key `file` to sign with")
	fs.StringVar(&c.passFile, "passphrase-file", "", "`file` holding the key's passphrase")
	fs.StringVar(&c.passEnv, "passphrase-env", "", "environment `variable` holding the key's passphrase")
	fs.StringVar(&c.logLevel, "log-level", "", "log `level`: trace, debug, info, warn, error")
}

func (c *common) registerRepo(fs *flag.FlagSet) {
	fs.StringVar(&c.format, "format", "", "format of a repository created on first include: deb or rpm")
	fs.StringVar(&c.suite, "suite", "", "suite of a deb repository created on first include (e.g. bookworm)")
	fs.StringVar(&c.component, "component", "main", "component of a deb repository created on first include")
	fs.StringVar(&c.rpmSignatures, "rpm-signatures", "header+payload", "signatures of an rpm repository created on first include: header+payload, or header (as rpmsign does since rpm 4.16)")
}

// env is what a command runs with.
type env struct {
	cfg    Config
	log    hclog.Logger
	store  *repo.Store
	stdout io.Writer
}

// load reads the config file, applies environment and flags, and opens
// the store.
func (c *common) load(ctx context.Context, stderr, stdout io.Writer) (*env, error) {
	var cfg Config
	if err := config.Load(c.configFile, &cfg); err != nil {
		return nil, err
	}
	if v, ok := config.Env("KILN_PUBLISHER_ROOT"); ok {
		cfg.Root = v
	}
	if v, ok := config.Env("KILN_PUBLISHER_KEY"); ok {
		cfg.Signing.KeyFile = v
	}
	if c.root != "" {
		cfg.Root = c.root
	}
	if c.key != "" {
		cfg.Signing.KeyFile = c.key
	}
	if c.passFile != "" {
		cfg.Signing.PassphraseFile = c.passFile
	}
	if c.passEnv != "" {
		cfg.Signing.PassphraseEnv = c.passEnv
	}
	if c.logLevel != "" {
		cfg.Log.Level = c.logLevel
	}
	if cfg.Root == "" {
		return nil, usagef("no publisher root: give --root DIR or root: in --config FILE")
	}
	for _, m := range cfg.Mirrors {
		if err := m.Validate(); err != nil {
			return nil, fmt.Errorf("config %s: %w", c.configFile, err)
		}
	}
	for i, r := range cfg.Repositories {
		r = r.WithDefaults()
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("config %s: %w", c.configFile, err)
		}
		cfg.Repositories[i] = r
	}
	log, err := logging.New(logging.Options{Name: "publisher", Level: cfg.Log.Level, JSON: cfg.Log.JSON, Output: stderr})
	if err != nil {
		return nil, err
	}
	st, err := repo.Open(ctx, repo.Options{Root: cfg.Root}, log.Named("repo"))
	if err != nil {
		return nil, err
	}
	for _, r := range cfg.Repositories {
		if err := st.CreateRepo(ctx, r); err != nil {
			st.Close()
			return nil, err
		}
	}
	return &env{cfg: cfg, log: log, store: st, stdout: stdout}, nil
}

// baseFlag registers --base on a command.
func baseFlag(fs *flag.FlagSet, base *bool) {
	fs.BoolVar(base, "base", false, "act on the repository's base (NAME"+repo.BaseSuffix+": the upstream packages its builds installed) instead of the repository")
}

// target returns the repository a command acts on: repoName, or with base
// its base, which must exist.
func (e *env) target(ctx context.Context, repoName string, base bool) (string, error) {
	if !base {
		return repoName, nil
	}
	b, err := e.store.Base(ctx, repoName)
	if err != nil {
		return "", err
	}
	return b.Name, nil
}

func (e *env) key(ctx context.Context) (*sign.Key, error) {
	return sign.Load(ctx, sign.Config{KeyFile: e.cfg.Signing.KeyFile, PassphraseFile: e.cfg.Signing.PassphraseFile, PassphraseEnv: e.cfg.Signing.PassphraseEnv})
}

// Run runs the publisher command line.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, topUsage)
		return usagef("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, topUsage)
		return nil
	case "include":
		return runInclude(ctx, rest, stdout, stderr)
	case "remove":
		return runRemove(ctx, rest, stdout, stderr)
	case "publish":
		return runPublish(ctx, rest, stdout, stderr)
	case "list":
		return runList(ctx, rest, stdout, stderr)
	case "snapshot":
		return runSnapshot(ctx, rest, stdout, stderr)
	case "key":
		return runKey(ctx, rest, stdout, stderr)
	case "push":
		return runPush(ctx, rest, stdout, stderr)
	case "gc":
		return runGC(ctx, rest, stdout, stderr)
	case "serve":
		return runServe(ctx, rest, stdout, stderr)
	}
	fmt.Fprint(stderr, topUsage)
	return usagef("unknown command %q", cmd)
}

// parse parses flags; errHelp means --help was asked for and printed.
var errHelp = errors.New("help shown")

func newFlags(name, usage string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: publisher %s\n\nFlags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	// Flags may come after positional arguments, as with reprepro.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return errHelp
			}
			fs.SetOutput(stderr)
			return usagef("%v", err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

func done(err error) error {
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

func runInclude(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	var c common
	var repoName string
	var publish, jsonOut, base bool
	fs := newFlags("include", "include --repo NAME [--base] [flags] FILE...", stdout)
	c.register(fs)
	c.registerRepo(fs)
	fs.StringVar(&repoName, "repo", "", "repository `name`")
	baseFlag(fs, &base)
	fs.BoolVar(&publish, "publish", false, "publish the repository afterwards")
	fs.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	if err := parse(fs, args, stderr); err != nil {
		return done(err)
	}
	if repoName == "" || fs.NArg() == 0 {
		return usagef("include needs --repo NAME and at least one FILE")
	}
	e, err := c.load(ctx, stderr, stdout)
	if err != nil {
		return err
	}
	defer e.store.Close()
	if _, err := e.store.Repo(ctx, repoName); errors.Is(err, repo.ErrNotFound) {
		if c.format == "" {
			return fmt.Errorf("repository %s does not exist: create it by giving --format deb|rpm (and --suite for deb) or list it in the config file", repoName)
		}
		rc := repo.Config{Name: repoName, Format: c.format, Suite: c.suite, Component: c.component}
		if c.format == repo.FormatRPM {
			rc.RPMSignatures = c.rpmSignatures
		}
		if err := e.store.CreateRepo(ctx, rc); err != nil {
			return err
		}
		e.log.Info("repository created", "repository", repoName, "format", c.format)
	} else if err != nil {
		return err
	}
	if base {
		b, err := e.store.EnsureBase(ctx, repoName)
		if err != nil {
			return err
		}
		repoName = b.Name
	}
	cfg, err := e.store.Repo(ctx, repoName)
	if err != nil {
		return err
	}
	var signer repo.Signer
	if cfg.Format == repo.FormatRPM || publish {
		k, err := e.key(ctx)
		if err != nil {
			return err
		}
		signer = k
	}
	var inputs []repo.Input
	for _, p := range fs.Args() {
		inputs = append(inputs, repo.Input{Name: filepath.Base(p), Path: p})
	}
	res, err := e.store.Include(ctx, repoName, inputs, nil, signer)
	if err != nil {
		return err
	}
	if jsonOut {
		if err := writeJSON(stdout, res); err != nil {
			return err
		}
	} else {
		for _, a := range res.Added {
			fmt.Fprintf(stdout, "added %s %s %s\n", a.Name, a.Version, a.Arch)
		}
		for _, a := range res.Existing {
			fmt.Fprintf(stdout, "already present %s %s %s\n", a.Name, a.Version, a.Arch)
		}
	}
	if publish {
		pub, err := e.store.Publish(ctx, repoName, signer)
		if err != nil {
			return err
		}
		if !jsonOut {
			fmt.Fprintf(stdout, "published %s (%d packages) in %s\n", repoName, pub.Packages, pub.Dir)
		}
	}
	return nil
}

func runRemove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	var repoName string
	var jsonOut, base bool
	fs := newFlags("remove", "remove --repo NAME [--base] [--json] [flags] NAME[/ARCH][=VERSION]...", stdout)
	c.register(fs)
	fs.StringVar(&repoName, "repo", "", "repository `name`")
	baseFlag(fs, &base)
	fs.BoolVar(&jsonOut, "json", false, "print the removed packages as JSON")
	if err := parse(fs, args, stderr); err != nil {
		return done(err)
	}
	if repoName == "" || fs.NArg() == 0 {
		return usagef("remove needs --repo NAME and at least one package")
	}
	var specs []repo.RemoveSpec
	for _, a := range fs.Args() {
		sp, err := repo.ParseRemoveSpec(a)
		if err != nil {
			return usagef("%v", err)
		}
		specs = append(specs, sp)
	}
	e, err := c.load(ctx, stderr, stdout)
	if err != nil {
		return err
	}
	defer e.store.Close()
	repoName, err = e.target(ctx, repoName, base)
	if err != nil {
		return err
	}
	removed, err := e.store.Remove(ctx, repoName, specs)
	if err != nil {
		return err
	}
	if jsonOut {
		return writeJSON(stdout, struct {
			Removed []repo.Entry `json:"removed"`
		}{removed})
	}
	for _, r := range removed {
		fmt.Fprintf(stdout, "removed %s %s %s\n", r.Name, r.Version, r.Arch)
	}
	fmt.Fprintf(stdout, "run publisher publish --repo %s to publish the change\n", repoName)
	return nil
}

func runPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	var repoName string
	var jsonOut, base bool
	fs := newFlags("publish", "publish --repo NAME [--base] [flags]", stdout)
	c.register(fs)
	fs.StringVar(&repoName, "repo", "", "repository `name`")
	baseFlag(fs, &base)
	fs.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	pushAfter := fs.Bool("push", false, "push the repository to the configured mirrors afterwards")
	if err := parse(fs, args, stderr); err != nil {
		return done(err)
	}
	if repoName == "" || fs.NArg() != 0 {
		return usagef("publish needs --repo NAME and no other arguments")
	}
	e, err := c.load(ctx, stderr, stdout)
	if err != nil {
		return err
	}
	defer e.store.Close()
	if _, err := e.store.Repo(ctx, repoName); err != nil {
		return err
	}
	if repoName, err = e.target(ctx, repoName, base); err != nil {
		return err
	}
	k, err := e.key(ctx)
	if err != nil {
		return err
	}
	res, err := e.store.Publish(ctx, repoName, k)
	if err != nil {
		return err
	}
	if *pushAfter {
		if err := e.push(ctx, res.Dir, "", stderr); err != nil {
			return err
		}
	}
	if jsonOut {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "published %s (%d packages) in %s\n", repoName, res.Packages, res.Dir)
	return nil
}

// push sends a published repository directory to the configured mirrors
// (or the one named).
func (e *env) push(ctx context.Context, dir, only string, log io.Writer) error {
	if len(e.cfg.Mirrors) == 0 {
		return usagef("no mirrors configured: add mirrors: [{name, dest}] to the config file")
	}
	found := false
	for _, m := range e.cfg.Mirrors {
		if only != "" && m.Name != only {
			continue
		}
		found = true
		if err := push.Repository(ctx, push.RunRsync, dir, m, log); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "pushed %s to %s\n", filepath.Base(dir), m.Name)
	}
	if !found {
		return usagef("no mirror named %q in the config", only)
	}
	return nil
}

func runPush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	var repoName, mirror string
	var base bool
	fs := newFlags("push", "push --repo NAME [--base] [--mirror NAME] [flags]", stdout)
	c.register(fs)
	fs.StringVar(&repoName, "repo", "", "repository `name` (published before)")
	baseFlag(fs, &base)
	fs.StringVar(&mirror, "mirror", "", "only this mirror (default: all configured)")
	if err := parse(fs, args, stderr); err != nil {
		return done(err)
	}
	if repoName == "" || fs.NArg() != 0 {
		return usagef("push needs --repo NAME and no other arguments")
	}
	e, err := c.load(ctx, stderr, stdout)
	if err != nil {
		return err
	}
	defer e.store.Close()
	if _, err := e.store.Repo(ctx, repoName); err != nil {
		return err
	}
	if repoName, err = e.target(ctx, repoName, base); err != nil {
		return err
	}
	return e.push(ctx, e.store.PublicDir(repoName), mirror, stderr)
}

func runGC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	var grace time.Duration
	var dryRun, jsonOut bool
	fs := newFlags("gc", "gc [--grace DURATION] [--dry-run] [--json] [flags]", stdout)
	c.register(fs)
	fs.DurationVar(&grace, "grace", repo.DefaultObjectGrace, "keep unreferenced files written or uploaded less than this `duration` ago (uploads wait for their publish request)")
	fs.BoolVar(&dryRun, "dry-run", false, "only count what would be removed")
	fs.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	if err := parse(fs, args, stderr); err != nil {
		return done(err)
	}
	if fs.NArg() != 0 {
		return usagef("gc takes no arguments")
	}
	if grace < 0 {
		return usagef("--grace %s is negative", grace)
	}
	e, err := c.load(ctx, stderr, stdout)
	if err != nil {
		return err
	}
	defer e.store.Close()
	res, err := e.store.CollectObjects(ctx, grace, dryRun)
	if err != nil {
		return err
	}
	if jsonOut {
		return writeJSON(stdout, struct {
			repo.CollectResult
			DryRun bool `json:"dry_run"`
		}{res, dryRun})
	}
	verb := "removed"
	if dryRun {
		verb = "would remove"
	}
	fmt.Fprintf(stdout, "%s %d unreferenced files (%d bytes); kept %d referenced and %d within the grace period\n", verb, res.Removed, res.Bytes, res.Kept, res.Young)
	return nil
}

func runList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	var repoName string
	var jsonOut, base bool
	fs := newFlags("list", "list [--repo NAME [--base]] [--json] [flags]", stdout)
	c.register(fs)
	fs.StringVar(&repoName, "repo", "", "repository `name` (without: list the repositories)")
	baseFlag(fs, &base)
	fs.BoolVar(&jsonOut, "json", false, "print JSON")
	if err := parse(fs, args, stderr); err != nil {
		return done(err)
	}
	if fs.NArg() != 0 {
		return usagef("list takes no arguments: give --repo NAME for a repository's packages")
	}
	if base && repoName == "" {
		return usagef("list --base needs --repo NAME: the repository whose base to list")
	}
	e, err := c.load(ctx, stderr, stdout)
	if err != nil {
		return err
	}
	defer e.store.Close()
	if repoName == "" {
		return listRepos(ctx, e.store, stdout, jsonOut)
	}
	if repoName, err = e.target(ctx, repoName, base); err != nil {
		return err
	}
	list, err := e.store.List(ctx, repoName)
	if err != nil {
		return err
	}
	if jsonOut {
		if list == nil {
			list = []repo.Entry{}
		}
		return writeJSON(stdout, list)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tARCH\tKIND\tSHA256")
	for _, p := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, p.Version, p.Arch, p.Kind, p.SHA256)
	}
	return tw.Flush()
}

func runSnapshot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("snapshot needs a subcommand: create, list or publish")
	}
	var c common
	var repoName string
	var jsonOut bool
	sub, rest := args[0], args[1:]
	switch sub {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, "Usage:\n  publisher snapshot create --repo NAME SNAP\n  publisher snapshot list [--repo NAME] [--json]\n  publisher snapshot publish SNAP\n\nRun \"publisher snapshot SUBCOMMAND --help\" for flags.\n")
		return nil
	case "create":
		fs := newFlags("snapshot create", "snapshot create --repo NAME [--json] [flags] SNAP", stdout)
		c.register(fs)
		fs.StringVar(&repoName, "repo", "", "repository `name`")
		fs.BoolVar(&jsonOut, "json", false, "print the snapshot as JSON")
		if err := parse(fs, rest, stderr); err != nil {
			return done(err)
		}
		if repoName == "" || fs.NArg() != 1 {
			return usagef("snapshot create needs --repo NAME and one snapshot name")
		}
		e, err := c.load(ctx, stderr, stdout)
		if err != nil {
			return err
		}
		defer e.store.Close()
		sn, err := e.store.CreateSnapshot(ctx, repoName, fs.Arg(0))
		if err != nil {
			return err
		}
		if jsonOut {
			return writeJSON(stdout, sn)
		}
		fmt.Fprintf(stdout, "snapshot %s of %s: %d packages\n", sn.Name, sn.Repo, sn.Packages)
		if sn.Base != "" {
			fmt.Fprintf(stdout, "snapshot %s of its base %s taken with it\n", sn.Base, repo.BaseName(sn.Repo))
		}
		return nil
	case "list":
		fs := newFlags("snapshot list", "snapshot list [--repo NAME] [--json] [flags]", stdout)
		c.register(fs)
		fs.StringVar(&repoName, "repo", "", "only snapshots of this repository")
		fs.BoolVar(&jsonOut, "json", false, "print JSON")
		if err := parse(fs, rest, stderr); err != nil {
			return done(err)
		}
		e, err := c.load(ctx, stderr, stdout)
		if err != nil {
			return err
		}
		defer e.store.Close()
		list, err := e.store.Snapshots(ctx, repoName)
		if err != nil {
			return err
		}
		if jsonOut {
			if list == nil {
				list = []repo.Snapshot{}
			}
			return writeJSON(stdout, list)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tREPOSITORY\tPACKAGES\tCREATED")
		for _, s := range list {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", s.Name, s.Repo, s.Packages, s.Created.Format("2006-01-02T15:04:05Z"))
		}
		return tw.Flush()
	case "publish":
		fs := newFlags("snapshot publish", "snapshot publish [--json] [flags] SNAP", stdout)
		c.register(fs)
		fs.BoolVar(&jsonOut, "json", false, "print the result as JSON")
		if err := parse(fs, rest, stderr); err != nil {
			return done(err)
		}
		if fs.NArg() != 1 {
			return usagef("snapshot publish needs one snapshot name")
		}
		e, err := c.load(ctx, stderr, stdout)
		if err != nil {
			return err
		}
		defer e.store.Close()
		k, err := e.key(ctx)
		if err != nil {
			return err
		}
		res, err := e.store.PublishSnapshot(ctx, fs.Arg(0), k)
		if err != nil {
			return err
		}
		if jsonOut {
			return writeJSON(stdout, res)
		}
		fmt.Fprintf(stdout, "published snapshot %s (%d packages) in %s\n", fs.Arg(0), res.Packages, res.Dir)
		if res.Base != nil {
			fmt.Fprintf(stdout, "published snapshot %s of the base (%d packages) in %s\n", repo.BaseName(fs.Arg(0)), res.Base.Packages, res.Base.Dir)
		}
		return nil
	}
	return usagef("unknown snapshot subcommand %q: use create, list or publish", sub)
}

func runKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("key needs a subcommand: show")
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, "Usage:\n  publisher key show [--key FILE | --config FILE] [--json]\n\nPrints the fingerprint and the armored public key to give to customers.\n")
		return nil
	case "show":
	default:
		return usagef("unknown key subcommand %q: use show", args[0])
	}
	var c common
	var jsonOut bool
	fs := newFlags("key show", "key show [--json] [flags]", stdout)
	c.register(fs)
	fs.BoolVar(&jsonOut, "json", false, "print fingerprint, signing key, algorithm and public key as JSON")
	if err := parse(fs, args[1:], stderr); err != nil {
		return done(err)
	}
	// key show needs no store: read the config and the key only.
	var cfg Config
	if err := config.Load(c.configFile, &cfg); err != nil {
		return err
	}
	sc := sign.Config{KeyFile: cfg.Signing.KeyFile, PassphraseFile: cfg.Signing.PassphraseFile, PassphraseEnv: cfg.Signing.PassphraseEnv}
	if v, ok := config.Env("KILN_PUBLISHER_KEY"); ok {
		sc.KeyFile = v
	}
	if c.key != "" {
		sc.KeyFile = c.key
	}
	if c.passFile != "" {
		sc.PassphraseFile = c.passFile
	}
	if c.passEnv != "" {
		sc.PassphraseEnv = c.passEnv
	}
	k, err := sign.Load(ctx, sc)
	if err != nil {
		return err
	}
	if jsonOut {
		return writeJSON(stdout, struct {
			Fingerprint string `json:"fingerprint"`
			SigningKey  string `json:"signing_key"`
			Algorithm   string `json:"algorithm"`
			PublicKey   string `json:"public_key"`
		}{k.Fingerprint(), k.SigningKeyID(), k.Algorithm(), string(k.PublicKey())})
	}
	fmt.Fprintf(stdout, "Fingerprint: %s\nSigning key: %s (%s)\n\n", k.Fingerprint(), k.SigningKeyID(), k.Algorithm())
	_, err = stdout.Write(k.PublicKey())
	return err
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	var listen string
	var dev bool
	fs := newFlags("serve", "serve [--listen ADDR] [--dev] [flags]", stdout)
	c.register(fs)
	fs.StringVar(&listen, "listen", "", "`address` to listen on (overrides serve: listen:)")
	fs.BoolVar(&dev, "dev", false, "plaintext, single-machine development mode (loopback addresses only)")
	if err := parse(fs, args, stderr); err != nil {
		return done(err)
	}
	e, err := c.load(ctx, stderr, stdout)
	if err != nil {
		return err
	}
	defer e.store.Close()
	if listen != "" {
		e.cfg.Serve.Listen = listen
	}
	if dev {
		e.cfg.Serve.Dev = true
	}
	if err := e.cfg.Serve.Validate(); err != nil {
		return err
	}
	k, err := e.key(ctx)
	if err != nil {
		return err
	}
	return daemon.New(daemon.Config{Serve: e.cfg.Serve, Mirrors: e.cfg.Mirrors, Ready: func(a net.Addr) {
		fmt.Fprintf(stdout, "listening on %s\n", a.String())
	}}, e.store, k, e.log).Run(ctx)
}

// repoSummary is one line of "publisher list" without --repo.
type repoSummary struct {
	repo.Config
	Packages int `json:"packages"`
}

func listRepos(ctx context.Context, st *repo.Store, stdout io.Writer, jsonOut bool) error {
	cfgs, err := st.Repos(ctx)
	if err != nil {
		return err
	}
	out := []repoSummary{}
	for _, c := range cfgs {
		pkgs, err := st.List(ctx, c.Name)
		if err != nil {
			return err
		}
		out = append(out, repoSummary{Config: c, Packages: len(pkgs)})
	}
	if jsonOut {
		return writeJSON(stdout, out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tFORMAT\tSUITE\tPACKAGES")
	for _, r := range out {
		suite := r.Suite
		if suite == "" {
			suite = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", r.Name, r.Format, suite, r.Packages)
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
