package gerrit

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/coordinator/gerrit/decide"
	"github.com/kiln-build/kiln/coordinator/gerrit/event"
	"github.com/kiln-build/kiln/internal/config"
)

func loadExample(t *testing.T) Config {
	t.Helper()
	return loadExampleWith(t, nil)
}

// loadExampleWith loads the example configuration after edit, when given,
// has changed its text.
func loadExampleWith(t *testing.T, edit func(string) string) Config {
	t.Helper()
	data, err := os.ReadFile("../../examples/gerrit/gerrit.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		data = []byte(edit(string(data)))
	}
	var file struct {
		Gerrit Config `yaml:"gerrit"`
	}
	if err := config.Decode("gerrit.yaml", data, &file); err != nil {
		t.Fatalf("example config: %v", err)
	}
	return file.Gerrit.WithDefaults()
}

func TestExampleConfigValid(t *testing.T) {
	t.Parallel()
	if err := loadExample(t).Validate(); err != nil {
		t.Fatalf("example config does not validate: %v", err)
	}
	// Defaults fill what a minimal section leaves out.
	minimal := loadExample(t)
	minimal.Verified, minimal.Recheck, minimal.Tag, minimal.Keepalive = VerifiedLabel{}, "", "", 0
	if err := minimal.Validate(); err != nil {
		t.Fatalf("minimal config does not validate: %v", err)
	}
}

// TestExamplePassphraseOptions: the example's commented passphrase
// options, uncommented, are options of the server.
func TestExamplePassphraseOptions(t *testing.T) {
	t.Parallel()
	c := loadExampleWith(t, func(s string) string {
		return strings.ReplaceAll(s, "# private_key_passphrase_", "private_key_passphrase_")
	})
	if s := c.Servers[0]; s.PrivateKeyPassphraseFile != "/etc/kiln/gerrit/id_ed25519.passphrase" || s.PrivateKeyPassphraseEnv != "KILN_GERRIT_KEY_PASSPHRASE" {
		t.Fatalf("server %+v, want both passphrase options from the example", s)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestExampleMapping(t *testing.T) {
	t.Parallel()
	m, err := decide.NewRules(loadExample(t).Rules)
	if err != nil {
		t.Fatal(err)
	}
	both := func(pkg string) []decide.PlanSource {
		return []decide.PlanSource{{Project: "mos/openstack/" + pkg, Role: decide.RoleCode}, {Project: "mos/openstack-build/" + pkg, Role: decide.RolePackaging}}
	}
	cases := []struct {
		project, branch string
		want            *decide.Plan
	}{
		{"mos/openstack/nova", "openstack-ci/fuel-9.0/mitaka", &decide.Plan{Rule: "openstack", Release: "mos-9.0", Package: "nova",
			Targets: []string{"trusty-amd64", "centos7-x86_64"}, Sources: both("nova")}},
		{"mos/openstack-build/nova", "openstack-ci/fuel-9.0/mitaka", &decide.Plan{Rule: "openstack", Release: "mos-9.0", Package: "nova",
			Targets: []string{"trusty-amd64", "centos7-x86_64"}, Sources: both("nova")}},
		{"mos/openstack/nova", "9.0", &decide.Plan{Rule: "openstack", Release: "mos-9.0", Package: "nova",
			Targets: []string{"trusty-amd64", "centos7-x86_64"}, Sources: both("nova")}},
		{"mos/packages/trusty/nginx", "9.0", &decide.Plan{Rule: "linux", Release: "mos-9.0", Package: "nginx",
			Targets: []string{"trusty-amd64"}, Sources: []decide.PlanSource{{Project: "mos/packages/trusty/nginx", Role: decide.RoleCombined}}}},
		{"mos/packages/centos7/nginx", "openstack-ci/fuel-8.0/liberty", &decide.Plan{Rule: "linux", Release: "mos-8.0", Package: "nginx",
			Targets: []string{"centos7-amd64"}, Sources: []decide.PlanSource{{Project: "mos/packages/centos7/nginx", Role: decide.RoleCombined}}}},
		{"mos/packages/fuel/centos7/fuel-library", "9.0", &decide.Plan{Rule: "master-node", Release: "mos-9.0-master-node", Package: "fuel-library",
			Targets: []string{"centos7-x86_64"}, Sources: []decide.PlanSource{{Project: "mos/packages/fuel/centos7/fuel-library", Role: decide.RoleCombined}}}},
		{"mos/packages/fuel/nginx", "9.0", nil},      // "fuel" is no distribution
		{"mos/packages/trusty/nginx", "master", nil}, // master names no release
		{"mos/openstack/nova", "stable/mitaka", nil},
		{"mos/other/nova", "9.0", nil},
		{"mos/openstack/nova/extra", "9.0", nil},
	}
	for _, tc := range cases {
		got, ok, err := m.Resolve(tc.project, tc.branch)
		if err != nil {
			t.Fatalf("resolve(%s, %s): %v", tc.project, tc.branch, err)
		}
		if tc.want == nil {
			if ok {
				t.Errorf("resolve(%s, %s) = %+v, want no match", tc.project, tc.branch, got)
			}
			continue
		}
		if !ok || !reflect.DeepEqual(got, *tc.want) {
			t.Errorf("resolve(%s, %s) = %+v %v, want %+v", tc.project, tc.branch, got, ok, *tc.want)
		}
	}
}

func TestValidateNamesBadValues(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{"no servers", func(c *Config) { c.Servers = nil }, "gerrit.servers: none configured"},
		{"bad ssh", func(c *Config) { c.Servers[0].SSH = "review.example.com" }, `gerrit.servers[0].ssh "review.example.com"`},
		{"duplicate name", func(c *Config) { c.Servers = append(c.Servers, c.Servers[0]) }, `name "review": used twice`},
		{"git url", func(c *Config) { c.Servers[0].GitURL = "ssh://x/y" }, `git_url "ssh://x/y": must contain {project}`},
		{"rest url", func(c *Config) { c.Servers[0].RESTURL = "ftp://x" }, `rest_url "ftp://x"`},
		{"recheck", func(c *Config) { c.Recheck = "(" }, `gerrit.recheck "("`},
		{"votes", func(c *Config) { c.Verified.Failure = 1 }, "failure 1"},
		{"label", func(c *Config) { c.Verified.Label = "Veri fied" }, `label "Veri fied"`},
		{"tag", func(c *Config) { c.Tag = "a b" }, `gerrit.tag "a b"`},
		{"log url", func(c *Config) { c.LogURL = "https://x/log" }, `log_url "https://x/log": must contain {job}`},
		{"track server", func(c *Config) { c.Track[0].Server = "nope" }, `track[0].server "nope"`},
		{"track branch", func(c *Config) { c.Track[0].Branches = []string{"../x"} }, `"../x"`},
		{"role", func(c *Config) { c.Rules[0].Sources[0].Role = "docs" }, `role "docs"`},
		{"unbound template", func(c *Config) { c.Rules[1].Branches[0].Release = "{nope}" }, "{nope} is not bound"},
		{"bad pattern", func(c *Config) { c.Rules[1].Sources[0].Project = "a//b" }, `pattern "a//b"`},
		{"where regexp", func(c *Config) { c.Rules[1].Where = map[string]string{"fuel": "("} }, `where fuel "("`},
		{"backoff", func(c *Config) { c.Reconnect.Min = c.Reconnect.Max + 1 }, "want 0 <= min <= max"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := loadExample(t)
			tc.change(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func FuzzResolve(f *testing.F) {
	f.Add("mos/openstack/nova", "openstack-ci/fuel-9.0/mitaka")
	f.Add("mos/packages/fuel/centos7/fuel-library", "9.0")
	f.Add("mos/packages/trusty/nginx", "9.0")
	f.Add("a//b", "/")
	data, err := os.ReadFile("../../examples/gerrit/gerrit.yaml")
	if err != nil {
		f.Fatal(err)
	}
	var file struct {
		Gerrit Config `yaml:"gerrit"`
	}
	if err := config.Decode("gerrit.yaml", data, &file); err != nil {
		f.Fatal(err)
	}
	m, err := decide.NewRules(file.Gerrit.Rules)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, project, branch string) {
		plan, ok, err := m.Resolve(project, branch)
		if err != nil || !ok {
			return
		}
		found := false
		for _, s := range plan.Sources {
			found = found || s.Project == project
		}
		if !found || plan.Release == "" || plan.Package == "" || len(plan.Targets) == 0 {
			t.Fatalf("resolve(%q, %q) = %+v", project, branch, plan)
		}
		if strings.Contains(plan.Package, "/") {
			t.Fatalf("package %q from %q holds a slash", plan.Package, project)
		}
	})
}

// The example webhooks.config subscribes to every event type the intake
// acts on, so that sites that copy it lose none (dropped-output is the SSH
// stream's own).
func TestExampleWebhooksConfigSubscribesToUsedTypes(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../examples/gerrit/webhooks.config")
	if err != nil {
		t.Fatal(err)
	}
	subscribed := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && strings.TrimSpace(k) == "event" {
			subscribed[strings.TrimSpace(v)] = true
		}
	}
	for _, typ := range event.ActedOn() {
		if typ != event.TypeDroppedOutput && !subscribed[typ] {
			t.Errorf("examples/gerrit/webhooks.config does not subscribe to %s", typ)
		}
	}
}
