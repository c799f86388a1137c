package cmdline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/kiln-build/kiln/internal/config"
)

// Program describes one binary's command line. Its grammar is a kong
// struct: commands with `cmd:""`, flags with `help:""`. A flag that is a
// setting carries `setting:"KEY"`, KEY being its path in the config file
// (`setting:""` for a setting with no config key, such as --config or the
// client's --server): its environment variable is EnvName(EnvPrefix,
// flag name) (or the flag's `envprefix` tag's prefix), and its default
// is the config's built-in one. Every other setting of the config file is
// read from EnvName(EnvPrefix, key) and the file only.
type Program struct {
	// Name is the binary's name.
	Name string
	// Summary is one line: what the binary is.
	Summary string
	// Description is what --help and the man page say about it.
	Description string
	// EnvPrefix prefixes the environment variables, e.g. "KILN_MIRROR_".
	EnvPrefix string
	// Defaults returns a pointer to the config file's struct holding the
	// built-in defaults; nil when the binary has no config file.
	Defaults func() any
	// Unclassified is the exit code of an error that carries none.
	Unclassified int
	// Vars are the values ${name} stands for in the grammar's tags.
	Vars map[string]string
}

// Invocation is one run of a command: what its Run method is given.
type Invocation struct {
	Out, Err io.Writer
	prog     *Program
	kctx     *kong.Context
	settings *settings
}

// settings is what a program's flags and config file declare.
type settings struct {
	byValue map[*kong.Value]*setting
	// flagEnv is the environment variable of each config key that a flag
	// of some command sets.
	flagEnv map[string]string
	// leaves are the config file's other settings.
	leaves []leafSetting
}

type setting struct {
	key, env, def string
}

type leafSetting struct {
	leaf
	env, def string
}

// exitHelp ends a parse after --help was printed.
type exitHelp struct{ code int }

// parser builds the kong parser of grammar.
func (p *Program) parser(grammar any, stdout, stderr io.Writer) (*kong.Kong, *settings, error) {
	st := &settings{byValue: map[*kong.Value]*setting{}, flagEnv: map[string]string{}}
	k, err := kong.New(grammar,
		kong.Name(p.Name),
		kong.Description(p.Description),
		kong.Writers(stdout, stderr),
		kong.Vars(p.Vars),
		// A flag's value may start with '-' (--priority -5), as with
		// Go's flag package before.
		kong.WithHyphenPrefixedParameters(true),
		kong.Exit(func(code int) { panic(exitHelp{code}) }),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, NoExpandSubcommands: false}),
		kong.ValueFormatter(st.helpValue),
		kong.PostBuild(func(k *kong.Kong) error { return p.declare(k, st) }),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: command line grammar: %w", p.Name, err)
	}
	return k, st, nil
}

// declare names the environment variable and the default of every
// setting.
func (p *Program) declare(k *kong.Kong, st *settings) error {
	var defaults reflect.Value
	if p.Defaults != nil {
		defaults = reflect.ValueOf(p.Defaults())
	}
	err := kong.Visit(k.Model, func(n kong.Visitable, next kong.Next) error {
		f, ok := n.(*kong.Flag)
		if !ok || !f.Tag.Has("setting") {
			return next(nil)
		}
		prefix := p.EnvPrefix
		if f.Tag.EnvPrefix != "" {
			prefix = f.Tag.EnvPrefix
		}
		s := &setting{key: f.Tag.Get("setting"), env: EnvName(prefix, f.Name), def: f.Default}
		if s.key != "" {
			if !defaults.IsValid() {
				return fmt.Errorf("flag --%s: setting %q but the program has no config", f.Name, s.key)
			}
			if v, ok := field(defaults, s.key, false); ok && s.def == "" {
				s.def = display(v)
			}
			if prev, ok := st.flagEnv[s.key]; ok && prev != s.env {
				return fmt.Errorf("config key %s is set by two flags (%s and %s)", s.key, prev, s.env)
			}
			st.flagEnv[s.key] = s.env
		}
		// kong reads the variable into the flag; an empty one is unset.
		if os.Getenv(s.env) != "" {
			f.Envs = []string{s.env}
			f.Value.Tag.Envs = []string{s.env}
		}
		st.byValue[f.Value] = s
		return next(nil)
	})
	if err != nil || !defaults.IsValid() {
		return err
	}
	for _, l := range leaves(defaults.Type()) {
		if _, ok := st.flagEnv[l.key]; ok {
			continue
		}
		ls := leafSetting{leaf: l, env: EnvName(p.EnvPrefix, l.key)}
		if v, ok := field(defaults, l.key, false); ok {
			ls.def = display(v)
		}
		st.leaves = append(st.leaves, ls)
	}
	return nil
}

// helpValue is a flag's help: its text, its default and its environment
// variable.
func (st *settings) helpValue(v *kong.Value) string {
	h := strings.TrimSuffix(v.Help, ".")
	var extra []string
	def := v.Default
	if s, ok := st.byValue[v]; ok && s.def != "" {
		def = s.def
	}
	if def != "" && !v.IsBool() {
		extra = append(extra, "default "+def)
	}
	if s, ok := st.byValue[v]; ok {
		extra = append(extra, "$"+s.env)
	}
	if len(extra) > 0 {
		h += " (" + strings.Join(extra, "; ") + ")"
	}
	return h
}

// Run parses args against grammar and runs the chosen command's Run
// method, which may take a context.Context, an *Invocation and what binds
// holds. --help prints the help to stdout and returns nil. Errors in the
// command line are ExitErrors with ExitUsage.
func (p *Program) Run(ctx context.Context, grammar any, args []string, stdout, stderr io.Writer, binds ...any) (err error) {
	k, st, err := p.parser(grammar, stdout, stderr)
	if err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			h, ok := r.(exitHelp)
			if !ok {
				panic(r)
			}
			if h.code != 0 {
				err = &ExitError{Code: ExitUsage, Err: errors.New("bad usage")}
			}
		}
	}()
	kctx, err := k.Parse(args)
	if err != nil {
		return usageError(p.Name, err)
	}
	in := &Invocation{Out: stdout, Err: stderr, prog: p, kctx: kctx, settings: st}
	kctx.BindTo(ctx, (*context.Context)(nil))
	kctx.Bind(in)
	kctx.Bind(binds...)
	return kctx.Run()
}

func usageError(name string, err error) error {
	var pe *kong.ParseError
	if errors.As(err, &pe) {
		msg := pe.Error()
		if c := pe.Context; c != nil {
			cmd := strings.TrimSpace(name + " " + commandPath(c))
			msg += fmt.Sprintf(" (%s --help shows the usage)", cmd)
		}
		return &ExitError{Code: ExitUsage, Err: errors.New(msg)}
	}
	return UsageError(err)
}

// commandPath is the commands chosen so far, without arguments.
func commandPath(c *kong.Context) string {
	var parts []string
	for _, p := range c.Path {
		if p.Command != nil {
			parts = append(parts, p.Command.Name)
		}
	}
	return strings.Join(parts, " ")
}

// Exit prints err (when it has a message to print) to stderr as
// "name: message" and returns the exit code.
func (p *Program) Exit(err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "%s: %v\n", p.Name, err)
	return Code(err, p.Unclassified)
}

// Load fills cfg, which holds the built-in defaults, from the config file
// at path (none when empty), then from the environment, then from the
// flags given: defaults < file < environment < flags. A config file or an
// environment variable that cannot be read is bad usage.
func (in *Invocation) Load(path string, cfg any) error {
	if err := config.Load(path, cfg); err != nil {
		return UsageError(err)
	}
	v := reflect.ValueOf(cfg)
	onPath := map[string]bool{}
	for _, f := range in.kctx.Flags() {
		if s, ok := in.settings.byValue[f.Value]; ok && s.key != "" {
			onPath[s.key] = true
		}
	}
	// Settings of the file alone, and those a flag of another command sets.
	apply := func(key, env string) error {
		name, text, ok := lookupEnv([]string{env})
		if !ok || text == "" {
			return nil
		}
		dst, _ := field(v, key, true)
		if err := setFromText(dst, text); err != nil {
			return Usage("environment %s (%s): %v", name, key, err)
		}
		return nil
	}
	for _, l := range in.settings.leaves {
		if err := apply(l.key, l.env); err != nil {
			return err
		}
	}
	for key, env := range in.settings.flagEnv {
		if !onPath[key] {
			if err := apply(key, env); err != nil {
				return err
			}
		}
	}
	// The flags of this command, or their environment variables (which
	// kong has read into the flag when the flag is not given).
	for _, f := range in.kctx.Flags() {
		s, ok := in.settings.byValue[f.Value]
		if !ok || s.key == "" {
			continue
		}
		if _, text, set := lookupEnv([]string{s.env}); !f.Set && (!set || text == "") {
			continue
		}
		dst, _ := field(v, s.key, true)
		assign(dst, f.Target)
	}
	return nil
}

// CheckHelp is the help of the --check-config flag of the commands that
// start a service.
const CheckHelp = "read and check the configuration (file, environment, flags) as a start would, print that it is ok and exit without starting; files it names are not read"

// ConfigChecked prints the answer of --check-config: the configuration
// from path (none: defaults and environment only), the environment and the
// flags passed the checks a start makes.
func ConfigChecked(w io.Writer, path string) error {
	if path == "" {
		path = "(no config file)"
	}
	_, err := fmt.Fprintf(w, "configuration ok: %s\n", path)
	return err
}
