// Package cli turns the publisher's command line into calls of the repo,
// sign and serve packages.
package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/internal/cmdline"
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

func usagef(format string, args ...any) error {
	return cmdline.Usage(format, args...)
}

// Program is the publisher's command line.
var Program = cmdline.Program{
	Name:    "publisher",
	Summary: "keep signed Debian and RPM repositories",
	Description: `Keeps signed Debian and RPM repositories with the operator's own OpenPGP key.

include, remove, publish, list and push take --base to act on the repository's base instead (NAME-base: the upstream packages its builds installed, kept beside it so that the release rebuilds from itself alone).

Every command takes --config FILE, or for a quick start without one --root DIR --key FILE [--passphrase-file F] and, creating a repository on its first include, --format deb|rpm [--suite S] [--component C] [--rpm-signatures header+payload|header].

Settings come from built-in defaults, then the config file, then KILN_PUBLISHER_* environment variables, then flags.`,
	EnvPrefix:    "KILN_PUBLISHER_",
	Defaults:     func() any { return &Config{} },
	Unclassified: cmdline.ExitFailed,
	Vars:         map[string]string{"gc_grace": repo.DefaultObjectGrace.String(), "check_help": cmdline.CheckHelp},
}

// grammar is the publisher's command line.
type grammar struct {
	Include  includeCmd     `cmd:"" help:"Add .deb, .udeb, .dsc (with its files) or .rpm files to a repository."`
	Remove   removeCmd      `cmd:"" help:"Remove packages: NAME, NAME=VERSION or NAME/ARCH=VERSION."`
	Publish  publishCmd     `cmd:"" help:"Write the signed indexes and switch them live atomically."`
	List     listCmd        `cmd:"" help:"List the repositories, or a repository's packages."`
	Snapshot snapshotCmd    `cmd:"" help:"Record, list and publish immutable snapshots of a repository (and its base)."`
	Key      keyCmd         `cmd:"" help:"Show the signing key."`
	Push     pushCmd        `cmd:"" help:"Rsync a published repository to the configured mirrors."`
	GC       gcCmd          `cmd:"" name:"gc" help:"Remove stored files no package or snapshot references."`
	Serve    serveCmd       `cmd:"" help:"Serve the gRPC API for the coordinator (pinned client certificate), /metrics and /healthz."`
	Man      cmdline.ManCmd `cmd:"" hidden:"" help:"Write the man page (roff) to stdout."`
}

// common holds the flags every command has.
type common struct {
	Config         string `help:"configuration file (YAML)" placeholder:"FILE" setting:""`
	Root           string `help:"publisher root directory (store, objects, public/)" placeholder:"DIR" setting:"root"`
	Key            string `help:"armored OpenPGP private key file to sign with" placeholder:"FILE" setting:"signing.key_file"`
	PassphraseFile string `help:"file holding the key's passphrase" placeholder:"FILE" setting:"signing.passphrase_file"`
	PassphraseEnv  string `help:"environment variable holding the key's passphrase" placeholder:"VARIABLE" setting:"signing.passphrase_env"`
	LogLevel       string `help:"log level: trace, debug, info, warn, error" placeholder:"LEVEL" setting:"log.level"`
}

// repoFlags create a repository on its first include.
type repoFlags struct {
	Format        string `help:"format of a repository created on first include: deb or rpm" placeholder:"deb|rpm"`
	Suite         string `help:"suite of a deb repository created on first include (e.g. bookworm)" placeholder:"SUITE"`
	Component     string `help:"component of a deb repository created on first include" default:"main" placeholder:"COMPONENT"`
	RPMSignatures string `name:"rpm-signatures" help:"signatures of an rpm repository created on first include: header+payload, or header (as rpmsign does since rpm 4.16)" default:"header+payload" placeholder:"KIND"`
}

// Run runs the publisher command line.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return Program.Run(ctx, &grammar{}, args, stdout, stderr)
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
func (c *common) load(ctx context.Context, in *cmdline.Invocation) (*env, error) {
	cfg, log, err := c.config(in)
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
	return &env{cfg: cfg, log: log, store: st, stdout: in.Out}, nil
}

// config reads the config file, applies environment and flags, checks
// the result and makes the logger, touching nothing on disk.
func (c *common) config(in *cmdline.Invocation) (Config, hclog.Logger, error) {
	var cfg Config
	if err := in.Load(c.Config, &cfg); err != nil {
		return cfg, nil, err
	}
	if cfg.Root == "" {
		return cfg, nil, usagef("no publisher root: give --root DIR or root: in --config FILE")
	}
	for _, m := range cfg.Mirrors {
		if err := m.Validate(); err != nil {
			return cfg, nil, fmt.Errorf("config %s: %w", c.Config, err)
		}
	}
	for i, r := range cfg.Repositories {
		r = r.WithDefaults()
		if err := r.Validate(); err != nil {
			return cfg, nil, fmt.Errorf("config %s: %w", c.Config, err)
		}
		cfg.Repositories[i] = r
	}
	log, err := logging.New(logging.Options{Name: "publisher", Level: cfg.Log.Level, JSON: cfg.Log.JSON, Output: in.Err})
	if err != nil {
		return cfg, nil, err
	}
	return cfg, log, nil
}

// baseFlag is --base.
type baseFlag struct {
	Base bool `help:"act on the repository's base (NAME-base: the upstream packages its builds installed) instead of the repository"`
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

type includeCmd struct {
	common
	repoFlags
	Repo string `help:"repository name" placeholder:"NAME"`
	baseFlag
	Publish bool     `help:"publish the repository afterwards"`
	JSON    bool     `name:"json" help:"print the result as JSON"`
	Files   []string `arg:"" optional:"" help:"the .deb, .udeb, .dsc (with its files) or .rpm files, or directories holding them (not searched below)" placeholder:"FILE|DIR"`
}

// packageExts are the files include takes from a directory.
var packageExts = []string{".deb", ".udeb", ".dsc", ".rpm"}

// includeInputs turns include's arguments into inputs: a file as it is, a
// directory as the package files in it (by name; a .dsc brings its own
// files), so that tens of thousands of packages need not be command-line
// arguments.
func includeInputs(args []string) ([]repo.Input, error) {
	var inputs []repo.Input
	for _, p := range args {
		info, err := os.Stat(p)
		if err != nil || !info.IsDir() {
			inputs = append(inputs, repo.Input{Name: filepath.Base(p), Path: p})
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		n := len(inputs)
		for _, e := range entries {
			if e.Type().IsRegular() && slices.Contains(packageExts, filepath.Ext(e.Name())) {
				inputs = append(inputs, repo.Input{Name: e.Name(), Path: filepath.Join(p, e.Name())})
			}
		}
		if len(inputs) == n {
			return nil, usagef("directory %s holds no package files (%s)", p, strings.Join(packageExts, ", "))
		}
	}
	return inputs, nil
}

// Run is `publisher include`.
func (c *includeCmd) Run(ctx context.Context, in *cmdline.Invocation) (err error) {
	stdout := in.Out
	repoName, publish, jsonOut, base := c.Repo, c.Publish, c.JSON, c.Base
	if repoName == "" || len(c.Files) == 0 {
		return usagef("include needs --repo NAME and at least one FILE")
	}
	e, err := c.load(ctx, in)
	if err != nil {
		return err
	}
	defer e.store.Close()
	if _, err := e.store.Repo(ctx, repoName); errors.Is(err, repo.ErrNotFound) {
		if c.Format == "" {
			return fmt.Errorf("repository %s does not exist: create it by giving --format deb|rpm (and --suite for deb) or list it in the config file", repoName)
		}
		rc := repo.Config{Name: repoName, Format: c.Format, Suite: c.Suite, Component: c.Component}
		if c.Format == repo.FormatRPM {
			rc.RPMSignatures = c.RPMSignatures
		}
		if err := e.store.CreateRepo(ctx, rc); err != nil {
			return err
		}
		e.log.Info("repository created", "repository", repoName, "format", c.Format)
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
	if repo.SignsOnInclude(cfg) || publish {
		k, err := e.key(ctx)
		if err != nil {
			return err
		}
		signer = k
	}
	inputs, err := includeInputs(c.Files)
	if err != nil {
		return err
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
		w := bufio.NewWriter(stdout)
		for _, a := range res.Added {
			fmt.Fprintf(w, "added %s %s %s\n", a.Name, a.Version, a.Arch)
		}
		for _, a := range res.Existing {
			fmt.Fprintf(w, "already present %s %s %s\n", a.Name, a.Version, a.Arch)
		}
		if err := w.Flush(); err != nil {
			return err
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

type removeCmd struct {
	common
	Repo string `help:"repository name" placeholder:"NAME"`
	baseFlag
	JSON     bool     `name:"json" help:"print the removed packages as JSON"`
	Packages []string `arg:"" optional:"" help:"packages to remove: NAME, NAME=VERSION or NAME/ARCH=VERSION" placeholder:"NAME[/ARCH][=VERSION]"`
}

// Run is `publisher remove`.
func (c *removeCmd) Run(ctx context.Context, in *cmdline.Invocation) error {
	stdout := in.Out
	repoName, jsonOut, base := c.Repo, c.JSON, c.Base
	if repoName == "" || len(c.Packages) == 0 {
		return usagef("remove needs --repo NAME and at least one package")
	}
	var specs []repo.RemoveSpec
	for _, a := range c.Packages {
		sp, err := repo.ParseRemoveSpec(a)
		if err != nil {
			return usagef("%v", err)
		}
		specs = append(specs, sp)
	}
	e, err := c.load(ctx, in)
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

type publishCmd struct {
	common
	Repo string `help:"repository name" placeholder:"NAME"`
	baseFlag
	JSON bool `name:"json" help:"print the result as JSON"`
	Push bool `help:"push the repository to the configured mirrors afterwards"`
}

// Run is `publisher publish`.
func (c *publishCmd) Run(ctx context.Context, in *cmdline.Invocation) error {
	stdout, stderr := in.Out, in.Err
	repoName, jsonOut, base, pushAfter := c.Repo, c.JSON, c.Base, &c.Push
	if repoName == "" {
		return usagef("publish needs --repo NAME and no other arguments")
	}
	e, err := c.load(ctx, in)
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

type pushCmd struct {
	common
	Repo string `help:"repository name (published before)" placeholder:"NAME"`
	baseFlag
	Mirror string `help:"only this mirror (default: all configured)" placeholder:"NAME"`
}

// Run is `publisher push`.
func (c *pushCmd) Run(ctx context.Context, in *cmdline.Invocation) error {
	stderr := in.Err
	repoName, mirror, base := c.Repo, c.Mirror, c.Base
	if repoName == "" {
		return usagef("push needs --repo NAME and no other arguments")
	}
	e, err := c.load(ctx, in)
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

type gcCmd struct {
	common
	Grace  time.Duration `help:"keep unreferenced files written or uploaded less than this duration ago (uploads wait for their publish request)" default:"${gc_grace}" placeholder:"DURATION"`
	DryRun bool          `help:"only count what would be removed"`
	JSON   bool          `name:"json" help:"print the result as JSON"`
}

// Run is `publisher gc`.
func (c *gcCmd) Run(ctx context.Context, in *cmdline.Invocation) error {
	stdout := in.Out
	grace, dryRun, jsonOut := c.Grace, c.DryRun, c.JSON
	if grace < 0 {
		return usagef("--grace %s is negative", grace)
	}
	e, err := c.load(ctx, in)
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

type listCmd struct {
	common
	Repo string `help:"repository name (without: list the repositories)" placeholder:"NAME"`
	baseFlag
	JSON bool `name:"json" help:"print JSON"`
}

// Run is `publisher list`.
func (c *listCmd) Run(ctx context.Context, in *cmdline.Invocation) error {
	stdout := in.Out
	repoName, jsonOut, base := c.Repo, c.JSON, c.Base
	if base && repoName == "" {
		return usagef("list --base needs --repo NAME: the repository whose base to list")
	}
	e, err := c.load(ctx, in)
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

type snapshotCmd struct {
	Create  snapshotCreateCmd  `cmd:"" help:"Record an immutable snapshot SNAP of a repository (and of its base)."`
	List    snapshotListCmd    `cmd:"" help:"List the snapshots."`
	Publish snapshotPublishCmd `cmd:"" help:"Publish snapshot SNAP under public/snapshots/SNAP."`
}

type snapshotCreateCmd struct {
	common
	Repo string `help:"repository name" placeholder:"NAME"`
	JSON bool   `name:"json" help:"print the snapshot as JSON"`
	Name string `arg:"" optional:"" help:"the snapshot's name" placeholder:"SNAP"`
}

// Run is `publisher snapshot create`.
func (c *snapshotCreateCmd) Run(ctx context.Context, in *cmdline.Invocation) error {
	stdout := in.Out
	repoName, jsonOut := c.Repo, c.JSON
	if repoName == "" || c.Name == "" {
		return usagef("snapshot create needs --repo NAME and one snapshot name")
	}
	e, err := c.load(ctx, in)
	if err != nil {
		return err
	}
	defer e.store.Close()
	sn, err := e.store.CreateSnapshot(ctx, repoName, c.Name)
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
}

type snapshotListCmd struct {
	common
	Repo string `help:"only snapshots of this repository" placeholder:"NAME"`
	JSON bool   `name:"json" help:"print JSON"`
}

// Run is `publisher snapshot list`.
func (c *snapshotListCmd) Run(ctx context.Context, in *cmdline.Invocation) error {
	stdout := in.Out
	e, err := c.load(ctx, in)
	if err != nil {
		return err
	}
	defer e.store.Close()
	list, err := e.store.Snapshots(ctx, c.Repo)
	if err != nil {
		return err
	}
	if c.JSON {
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
}

type snapshotPublishCmd struct {
	common
	JSON bool   `name:"json" help:"print the result as JSON"`
	Name string `arg:"" optional:"" help:"the snapshot's name" placeholder:"SNAP"`
}

// Run is `publisher snapshot publish`.
func (c *snapshotPublishCmd) Run(ctx context.Context, in *cmdline.Invocation) error {
	stdout := in.Out
	if c.Name == "" {
		return usagef("snapshot publish needs one snapshot name")
	}
	e, err := c.load(ctx, in)
	if err != nil {
		return err
	}
	defer e.store.Close()
	k, err := e.key(ctx)
	if err != nil {
		return err
	}
	res, err := e.store.PublishSnapshot(ctx, c.Name, k)
	if err != nil {
		return err
	}
	if c.JSON {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "published snapshot %s (%d packages) in %s\n", c.Name, res.Packages, res.Dir)
	if res.Base != nil {
		fmt.Fprintf(stdout, "published snapshot %s of the base (%d packages) in %s\n", repo.BaseName(c.Name), res.Base.Packages, res.Base.Dir)
	}
	return nil
}

type keyCmd struct {
	Show keyShowCmd `cmd:"" help:"Print the fingerprint and the armored public key to give to customers."`
}

type keyShowCmd struct {
	common
	JSON bool `name:"json" help:"print fingerprint, signing key, algorithm and public key as JSON"`
}

// Run is `publisher key show`.
func (c *keyShowCmd) Run(ctx context.Context, in *cmdline.Invocation) error {
	stdout := in.Out
	jsonOut := c.JSON
	// key show needs no store: read the config and the key only.
	var cfg Config
	if err := in.Load(c.Config, &cfg); err != nil {
		return err
	}
	sc := sign.Config{KeyFile: cfg.Signing.KeyFile, PassphraseFile: cfg.Signing.PassphraseFile, PassphraseEnv: cfg.Signing.PassphraseEnv}
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

type serveCmd struct {
	common
	Listen string `help:"address to listen on" placeholder:"ADDR" setting:"serve.listen"`
	Dev    bool   `help:"plaintext, single-machine development mode (loopback addresses only)" setting:"serve.dev"`
	// CheckConfig neither opens the store nor reads the signing key.
	CheckConfig bool `name:"check-config" help:"${check_help}"`
}

// Run is `publisher serve`.
func (c *serveCmd) Run(ctx context.Context, in *cmdline.Invocation) error {
	if c.CheckConfig {
		cfg, _, err := c.config(in)
		if err != nil {
			return err
		}
		if err := cfg.Serve.Validate(); err != nil {
			return err
		}
		return cmdline.ConfigChecked(in.Out, c.Config)
	}
	e, err := c.load(ctx, in)
	if err != nil {
		return err
	}
	defer e.store.Close()
	return runServe(ctx, e, in.Out)
}

func runServe(ctx context.Context, e *env, stdout io.Writer) error {
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
