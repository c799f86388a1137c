package cmdline

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEnvName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"work-dir": "KILN_W_WORK_DIR", "buildroot.state_dir": "KILN_W_BUILDROOT_STATE_DIR", "config": "KILN_W_CONFIG"} {
		if got := EnvName("KILN_W_", in); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", in, got, want)
		}
	}
}

type sampleSection struct {
	Level string `yaml:"level"`
}

type sampleConfig struct {
	Dir     string            `yaml:"dir"`
	Slots   int               `yaml:"slots"`
	Grace   time.Duration     `yaml:"grace"`
	Labels  map[string]string `yaml:"labels"`
	Names   []string          `yaml:"names"`
	Log     sampleSection     `yaml:"log"`
	Opt     *sampleSection    `yaml:"opt"`
	Targets []sampleSection   `yaml:"targets"`
}

type sampleCmd struct {
	Config string            `setting:""`
	Dir    string            `setting:"dir"`
	Slots  int               `setting:"slots"`
	Labels map[string]string `setting:"labels" mapsep:","`
	got    *sampleConfig
}

func (c *sampleCmd) Run(in *Invocation) error {
	*c.got = sampleConfig{Slots: 1}
	return in.Load(c.Config, c.got)
}

// The layers in order, a section allocated for its variable, maps added
// to the file's, and lists and maps of sections left to the file.
func TestLoadLayers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("dir: /file\nslots: 2\nlabels: {a: '1'}\nlog: {level: debug}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Program{Name: "sample", EnvPrefix: "KILN_S_", Defaults: func() any { return &sampleConfig{Slots: 1} }}
	load := func(args ...string) (sampleConfig, error) {
		var got sampleConfig
		g := &struct {
			Cmd sampleCmd `cmd:""`
		}{Cmd: sampleCmd{got: &got}}
		var out bytes.Buffer
		err := p.Run(context.Background(), g, append([]string{"cmd"}, args...), &out, &out)
		return got, err
	}
	t.Setenv("KILN_S_CONFIG", file)
	t.Setenv("KILN_S_SLOTS", "3")
	t.Setenv("KILN_S_GRACE", "5m")
	t.Setenv("KILN_S_LABELS", "b=2")
	t.Setenv("KILN_S_NAMES", "x,y")
	t.Setenv("KILN_S_OPT_LEVEL", "warn")
	t.Setenv("KILN_S_LOG_LEVEL", "")
	t.Setenv("KILN_S_DIR", "") // empty: unset, for a flag too
	if got, err := load(); err != nil || got.Dir != "/file" {
		t.Errorf("an empty variable is not unset: %v %+v", err, got)
	}
	t.Setenv("KILN_S_DIR", "/env")
	got, err := load()
	if err != nil {
		t.Fatal(err)
	}
	if got.Dir != "/env" || got.Slots != 3 || got.Grace != 5*time.Minute || got.Labels["a"] != "1" || got.Labels["b"] != "2" ||
		strings.Join(got.Names, "|") != "x|y" || got.Opt == nil || got.Opt.Level != "warn" || got.Log.Level != "debug" {
		t.Errorf("env over file: %+v (opt %+v)", got, got.Opt)
	}
	got, err = load("--dir", "/flag", "--labels", "c=3", "--slots", "-5")
	if err != nil || got.Dir != "/flag" || got.Slots != -5 || got.Labels["a"] != "1" || got.Labels["b"] != "" || got.Labels["c"] != "3" {
		t.Errorf("flags over env: %v %+v", err, got)
	}
	t.Setenv("KILN_S_GRACE", "soon")
	if _, err := load(); Code(err, -1) != ExitUsage || !strings.Contains(err.Error(), "KILN_S_GRACE") || !strings.Contains(err.Error(), "duration") {
		t.Errorf("bad variable: %v, want exit 2 naming it and the type", err)
	}
	var names []string
	for _, l := range leaves(reflect.TypeFor[sampleConfig]()) {
		names = append(names, l.key)
	}
	if got := strings.Join(names, " "); got != "dir slots grace labels names log.level opt.level" {
		t.Errorf("settings of the file: %s", got)
	}
}
