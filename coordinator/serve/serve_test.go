package serve

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/store"
	"github.com/kiln-build/kiln/internal/config"
	"github.com/kiln-build/kiln/internal/reconnect"
	"github.com/kiln-build/kiln/internal/tlsconfig"
)

func TestExampleConfigIsValid(t *testing.T) {
	t.Parallel()
	cfg := Defaults()
	if err := config.Load("../../examples/coordinator.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Extra.Publisher == nil || cfg.Releases["mos-9.0"].DebSuffix == "" {
		t.Fatalf("example lost its sections: %+v", cfg)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"dev off loopback", func(c *Config) { c.Dev = true; c.Listen = "0.0.0.0:7420" }, "loopback only"},
		{"no tls", func(c *Config) { c.Dev = false }, "no TLS configured"},
		{"lost before heartbeat", func(c *Config) { c.LostAfter = c.HeartbeatInterval }, "lost_after"},
		{"plain public_url in production", func(c *Config) {
			c.Dev = false
			c.TLS = tlsconfig.Files{Cert: "c.pem", Key: "k.pem", CA: "ca.pem"}
			c.PublicURL = "http://kiln.example.org"
		}, `public_url "http://kiln.example.org": outside --dev http_listen serves HTTPS`},
		{"tiny log cap", func(c *Config) { c.MaxLogSize = 100 }, "max_log_size 100"},
		{"reclaim window shorter than a worker's return", func(c *Config) { c.ReclaimWindow = reconnect.Within }, "reclaim_window " + reconnect.Within.String() + " is shorter"},
		{"bad format", func(c *Config) {
			c.Releases = map[string]fleet.Release{"r": {Targets: map[string]string{"t": "tgz"}}}
		}, `format "tgz"`},
	}
	for _, tc := range cases {
		cfg := Defaults()
		cfg.Dev = true
		tc.mod(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	bad := Defaults()
	if err := config.Decode("c.yaml", []byte("listen: x\nlisten_addr: y\n"), &bad); err == nil || !strings.Contains(err.Error(), "c.yaml: line 2: field listen_addr not found") {
		t.Errorf("unknown key: %v", err)
	}
}

// The reclaim window, derived or set, always covers a worker's return
// after an outage: its longest reconnect delay and a heartbeat.
func TestReclaimWindowCoversWorkerReturn(t *testing.T) {
	t.Parallel()
	cfg := Defaults()
	cfg.Dev = true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	need := reconnect.Within + cfg.HeartbeatInterval
	if got := cfg.ReclaimWindowFor(); got < need {
		t.Fatalf("derived reclaim window %s, want at least %s", got, need)
	}
	cfg.LostAfter = 10 * time.Minute
	if got := cfg.ReclaimWindowFor(); got != cfg.LostAfter {
		t.Fatalf("derived reclaim window %s, want lost_after %s", got, cfg.LostAfter)
	}
	cfg.ReclaimWindow = need
	if err := cfg.Validate(); err != nil || cfg.ReclaimWindowFor() != need {
		t.Fatalf("reclaim window set to %s: %v, %s", need, err, cfg.ReclaimWindowFor())
	}
}

// /logs/ID is plain text that no browser may take for anything else.
func TestLogsAreServedAsPlainTextWithoutSniffing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "coordinator.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f, err := fleet.New(ctx, fleet.Config{StateDir: dir}, st, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	j, _, err := f.Submit(ctx, job.Spec{Kind: job.Command, Command: []string{"true"}, Labels: map[string]string{"os": "linux"}})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	serveLog(rec, httptest.NewRequest("GET", "/logs/"+j.ID, nil), f)
	h := rec.Result().Header
	if rec.Code != 200 || h.Get("Content-Type") != "text/plain; charset=utf-8" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("status %d, headers %v", rec.Code, h)
	}
}
