package serve

import (
	"strings"
	"testing"

	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/internal/config"
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
