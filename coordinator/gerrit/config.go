package gerrit

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/event"
)

// Config is the gerrit: section of the coordinator's configuration file.
type Config struct {
	// Servers are the Gerrit servers to listen to; at least one.
	Servers []ServerConfig `yaml:"servers"`
	// Keepalive is how often an idle stream is probed; a stream that does
	// not answer within the same time is reconnected.
	Keepalive time.Duration `yaml:"keepalive"`
	// Reconnect is the backoff between stream reconnects.
	Reconnect Backoff `yaml:"reconnect"`
	// ReconcileInterval is how often tracked branches are compared with
	// their heads, on top of after every reconnect.
	ReconcileInterval time.Duration `yaml:"reconcile_interval"`
	// Recheck is the regular expression a review comment must match to
	// build the patch set again.
	Recheck string `yaml:"recheck"`
	// Verified is the label voted after a review build.
	Verified VerifiedLabel `yaml:"verified"`
	// Tag marks Kiln's review messages so they can be filtered.
	Tag string `yaml:"tag"`
	// LogURL is the link to a job's log, with {job} replaced by the job id.
	LogURL string `yaml:"log_url"`
	// GitTimeout bounds one branch-head lookup (git ls-remote); a lookup
	// that takes longer is ended with every process it started, and the
	// event waiting for it is tried again later.
	GitTimeout time.Duration `yaml:"git_timeout"`
	// EventLogSize is how many events ListEvents can go back.
	EventLogSize int `yaml:"event_log_size"`
	// Track lists branches reconciled even before any event named them.
	Track []Tracked `yaml:"track"`
	// Rules map a project and branch to the package builds they cause; the
	// first rule whose project and branch patterns match wins.
	Rules []Rule `yaml:"rules"`
}

// ServerConfig is one Gerrit server.
type ServerConfig struct {
	// Name identifies the server in events, jobs and the webhook path.
	Name string `yaml:"name"`
	// SSH is host:port of Gerrit's SSH daemon, e.g. review.example.com:29418.
	SSH string `yaml:"ssh"`
	// User is the account Kiln logs in and votes as.
	User string `yaml:"user"`
	// PrivateKeyFile is the account's SSH private key (OpenSSH or PEM).
	PrivateKeyFile string `yaml:"private_key_file"`
	// PrivateKeyPassphraseFile holds the passphrase of an encrypted
	// PrivateKeyFile; one trailing newline is ignored.
	PrivateKeyPassphraseFile string `yaml:"private_key_passphrase_file"`
	// PrivateKeyPassphraseEnv names an environment variable that holds the
	// passphrase. Used when PrivateKeyPassphraseFile is empty.
	PrivateKeyPassphraseEnv string `yaml:"private_key_passphrase_env"`
	// KnownHostsFile holds the server's host key in OpenSSH format.
	KnownHostsFile string `yaml:"known_hosts_file"`
	// WebhookSecret, when set, enables the webhook endpoint for this server;
	// requests must carry it (Authorization: Bearer, or ?secret=).
	WebhookSecret string `yaml:"webhook_secret"`
	// RESTURL, when set, makes reviews go over Gerrit's REST API instead of
	// SSH, authenticated as User with the HTTP password in HTTPPasswordFile.
	RESTURL          string `yaml:"rest_url"`
	HTTPPasswordFile string `yaml:"http_password_file"`
	// GitURL is where sources are fetched from and branch heads are read,
	// with {project} replaced by the project name, e.g.
	// ssh://kiln@review.example.com:29418/{project}.
	GitURL string `yaml:"git_url"`
	// DisableStream turns the SSH stream off (webhook-only sites).
	DisableStream bool `yaml:"disable_stream"`
}

// Backoff bounds the exponential wait between reconnects.
type Backoff struct {
	Min time.Duration `yaml:"min"`
	Max time.Duration `yaml:"max"`
}

// VerifiedLabel is the label voted after review builds.
type VerifiedLabel struct {
	Label   string `yaml:"label"`
	Success int    `yaml:"success"`
	Failure int    `yaml:"failure"`
}

// Tracked is a branch the reconciler watches from the start.
type Tracked struct {
	Server   string   `yaml:"server"`
	Project  string   `yaml:"project"`
	Branches []string `yaml:"branches"`
}

// Rule maps projects and branches to builds.
//
// Patterns are split on "/"; a segment {name} matches one non-empty segment
// and binds name (to the regular expression in Where when given), any other
// segment matches itself. The bound names fill the templates of Branches.
type Rule struct {
	Name string `yaml:"name"`
	// Sources are the projects that make up the package: one combined
	// source, or a code and a packaging source. A change to any of them
	// builds with all of them: the changed one at the change's revision, the
	// others at the head of the same branch.
	Sources []RuleSource `yaml:"sources"`
	// Where restricts placeholders to regular expressions (whole match).
	Where map[string]string `yaml:"where"`
	// Branches are tried in order; the first match decides.
	Branches []BranchRule `yaml:"branches"`
}

// RuleSource is one project pattern of a rule.
type RuleSource struct {
	Project string `yaml:"project"`
	// Role is combined, code or packaging.
	Role string `yaml:"role"`
}

// BranchRule maps a branch pattern to release, targets and package.
type BranchRule struct {
	Branch  string   `yaml:"branch"`
	Release string   `yaml:"release"`
	Targets []string `yaml:"targets"`
	Package string   `yaml:"package"`
}

// Source roles.
const (
	RoleCombined  = "combined"
	RoleCode      = "code"
	RolePackaging = "packaging"
)

// WithDefaults returns c with defaults filled in where unset.
func (c Config) WithDefaults() Config {
	if c.Keepalive == 0 {
		c.Keepalive = 30 * time.Second
	}
	if c.Reconnect.Min == 0 {
		c.Reconnect.Min = time.Second
	}
	if c.Reconnect.Max == 0 {
		c.Reconnect.Max = 5 * time.Minute
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = 10 * time.Minute
	}
	if c.Recheck == "" {
		c.Recheck = `(?im)^\s*recheck\s*$`
	}
	if c.Verified.Label == "" {
		c.Verified = VerifiedLabel{Label: "Verified", Success: 1, Failure: -1}
	}
	if c.Tag == "" {
		c.Tag = "autogenerated:kiln"
	}
	if c.EventLogSize == 0 {
		c.EventLogSize = 10000
	}
	if c.GitTimeout == 0 {
		c.GitTimeout = defaultGitTimeout
	}
	return c
}

var labelName = regexp.MustCompile(`^[A-Za-z0-9-]+$`)

// Validate reports every problem in c, naming the bad values; unset
// fields are validated with their defaults.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Servers) == 0 {
		bad("gerrit.servers: none configured; add at least one server")
	}
	names := map[string]bool{}
	for i, s := range c.Servers {
		p := fmt.Sprintf("gerrit.servers[%d]", i)
		switch {
		case s.Name == "":
			bad("%s.name: empty; give the server a name", p)
		case !labelName.MatchString(s.Name):
			bad("%s.name %q: use letters, digits and dashes", p, s.Name)
		case names[s.Name]:
			bad("%s.name %q: used twice; names must be unique", p, s.Name)
		}
		names[s.Name] = true
		if !s.DisableStream || s.RESTURL == "" {
			if _, _, err := net.SplitHostPort(s.SSH); err != nil {
				bad("%s.ssh %q: want host:port, e.g. review.example.com:29418", p, s.SSH)
			}
			if s.PrivateKeyFile == "" {
				bad("%s.private_key_file: empty; name the SSH key to log in with", p)
			}
			if s.KnownHostsFile == "" {
				bad("%s.known_hosts_file: empty; name a known_hosts file holding the server's host key", p)
			}
		}
		if s.User == "" {
			bad("%s.user: empty; name the Gerrit account", p)
		}
		if s.RESTURL != "" {
			u, err := url.Parse(s.RESTURL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad("%s.rest_url %q: want an http(s) URL such as https://review.example.com/", p, s.RESTURL)
			}
			if s.HTTPPasswordFile == "" {
				bad("%s.http_password_file: empty; rest_url needs the account's HTTP password", p)
			}
		}
		if !strings.Contains(s.GitURL, "{project}") {
			bad("%s.git_url %q: must contain {project}, e.g. ssh://kiln@review.example.com:29418/{project}", p, s.GitURL)
		} else if strings.HasPrefix(s.GitURL, "-") {
			bad("%s.git_url %q: must not start with '-'", p, s.GitURL)
		}
	}
	if c.Keepalive < 0 {
		bad("gerrit.keepalive %s: must not be negative", c.Keepalive)
	}
	if c.Reconnect.Min < 0 || c.Reconnect.Max < c.Reconnect.Min {
		bad("gerrit.reconnect min %s max %s: want 0 <= min <= max", c.Reconnect.Min, c.Reconnect.Max)
	}
	if c.ReconcileInterval < 0 {
		bad("gerrit.reconcile_interval %s: must not be negative", c.ReconcileInterval)
	}
	if _, err := regexp.Compile(c.Recheck); err != nil {
		bad("gerrit.recheck %q: not a regular expression: %w", c.Recheck, err)
	}
	if c.Verified.Label != "" && !labelName.MatchString(c.Verified.Label) {
		bad("gerrit.verified.label %q: use letters, digits and dashes", c.Verified.Label)
	}
	if c.Verified.Success <= 0 || c.Verified.Failure >= 0 {
		bad("gerrit.verified success %d failure %d: want success > 0 and failure < 0", c.Verified.Success, c.Verified.Failure)
	}
	if strings.ContainsAny(c.Tag, " \t\r\n'\"") {
		bad("gerrit.tag %q: must not contain spaces or quotes", c.Tag)
	}
	if c.LogURL != "" && !strings.Contains(c.LogURL, "{job}") {
		bad("gerrit.log_url %q: must contain {job}", c.LogURL)
	}
	if c.GitTimeout < 0 {
		bad("gerrit.git_timeout %s: must not be negative", c.GitTimeout)
	}
	if c.EventLogSize < 0 {
		bad("gerrit.event_log_size %d: must not be negative", c.EventLogSize)
	}
	for i, t := range c.Track {
		p := fmt.Sprintf("gerrit.track[%d]", i)
		if !names[t.Server] {
			bad("%s.server %q: no such server in gerrit.servers", p, t.Server)
		}
		if err := event.CheckName(t.Project); err != nil {
			bad("%s.project: %w", p, err)
		}
		for _, b := range t.Branches {
			if err := event.CheckName(b); err != nil {
				bad("%s.branches: %w", p, err)
			}
		}
	}
	if len(c.Rules) == 0 {
		bad("gerrit.rules: none configured; add a rule mapping projects to packages")
	}
	for i, r := range c.Rules {
		if _, err := compileRule(r); err != nil {
			bad("gerrit.rules[%d] (%s): %w", i, r.Name, err)
		}
	}
	return errors.Join(errs...)
}
