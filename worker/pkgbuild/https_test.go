package pkgbuild

import (
	"bytes"
	"context"
	"encoding/pem"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/executor"
)

// Phase 1 against an https Debian mirror: apt in the buildroot, through
// the package source proxy, fetches it in the open (httpsViaProxy), the
// proxy goes on over https checking the mirror's certificate against
// buildroot.source_ca_file, and the package files are cached and
// captured with their https URLs; no tunnel. The https mirror is a TLS
// front of the test mirror, which serves Debian's signed Release.
func TestPhaseOneCapturesHTTPSSources(t *testing.T) {
	t.Parallel()
	deb := buildroottest.Targets()[0]
	mirror, err := url.Parse(deb.Mirror)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewTLSServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(&url.URL{Scheme: mirror.Scheme, Host: mirror.Host})
	}})
	defer front.Close()
	ca := filepath.Join(t.TempDir(), "sources-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := buildroottest.Config(t)
	cfg.SourceCAFile = ca
	br, target := buildroottest.NewWith(t, cfg, buildroottest.DebTarget)
	ctx := context.Background()
	sb, err := br.OpenSandbox(ctx, target, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close(ctx)
	https := front.URL + mirror.Path
	script := "rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*\n" +
		"echo 'deb " + https + " " + deb.Suite + " main' > /etc/apt/sources.list.d/front.list\n" +
		httpsViaProxy(aptSources...) +
		"cat /etc/apt/sources.list.d/front.list\n" +
		"apt-get update -o APT::Color=0 -o Acquire::Languages=none >/dev/null\n" +
		"apt-get install -y --no-install-recommends -o APT::Color=0 -o Dpkg::Use-Pty=0 zlib1g-dev\n"
	var log bytes.Buffer
	res, err := sb.Exec(ctx, executor.Step{Argv: []string{"sh", "-ec", script}, Root: true, Network: true,
		AllowHosts: []string{"https://" + strings.TrimPrefix(front.URL, "https://")}, Timeout: 10 * time.Minute}, &log)
	if err != nil || res.Failed() {
		t.Fatalf("phase 1 from %s: %+v %v\n%s", https, res, err, log.String())
	}
	plain := "http://" + strings.TrimPrefix(front.URL, "https://") + mirror.Path
	if !strings.Contains(log.String(), "fetched through the package source proxy") || !strings.Contains(log.String(), "deb "+plain+" ") {
		t.Errorf("the https source was not named for the proxy:\n%s", log.String())
	}
	if strings.Contains(log.String(), "as tunnels") {
		t.Errorf("a tunnel was used:\n%s", log.String())
	}
	found := false
	for _, f := range res.Packages {
		if strings.HasPrefix(f.Name, "zlib1g-dev_") {
			found = true
			if !strings.HasPrefix(f.URL, front.URL+"/") || f.CacheHit {
				t.Errorf("zlib1g-dev captured as %+v, want fetched from %s", f, front.URL)
			}
			if _, err := br.PackageCache().Open(f.SHA256); err != nil {
				t.Errorf("zlib1g-dev not in the package cache: %v", err)
			}
		}
	}
	if !found {
		t.Errorf("zlib1g-dev not among the captured files %+v:\n%s", res.Packages, log.String())
	}
}
