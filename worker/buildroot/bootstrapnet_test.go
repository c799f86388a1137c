package buildroot

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-build/kiln/worker/pkgcache"
)

// The bootstrap dnf's downloads pass a proxy on the host's loopback that
// reaches the target's repositories only, takes package files from the
// package cache or keeps them there, and lists them for the base.
func TestBootstrapProxyCapturesAndReusesPackageFiles(t *testing.T) {
	t.Parallel()
	rpm := bytes.Repeat([]byte("rpm"), 5000)
	var mu sync.Mutex
	reached := 0
	source := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".rpm") {
			mu.Lock()
			reached++
			mu.Unlock()
			w.Header().Set("Content-Length", fmt.Sprint(len(rpm)))
			w.Write(rpm)
			return
		}
		http.NotFound(w, r)
	}))
	defer source.Close()
	cache, err := pkgcache.Open(pkgcache.Config{Dir: t.TempDir(), MaxSize: 1 << 30}, hclog.NewNullLogger(), pkgcache.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	tgt := Target{Name: "el", Method: "dnf", Repositories: []Repository{{Name: "base", BaseURL: source.URL + "/el/", GPGKey: "file:///etc/kiln/mos.asc"}}}
	s := &Sandbox{b: &Buildroot{cfg: Config{DependencyNetwork: NetworkSources}, cache: cache}}
	log := &syncBuffer{}
	bp, err := s.startBootstrapProxy(tgt, log)
	if err != nil {
		t.Fatal(err)
	}
	if args := bp.args(); !slices.Equal(args, []string{"--setopt=proxy=" + bp.url}) {
		t.Errorf("dnf options %q", args)
	}
	if env := bp.env(); !slices.Contains(env, "no_proxy=") {
		t.Errorf("dnf environment %q keeps the host's no_proxy", env)
	}
	proxyURL, _ := url.Parse(bp.url)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	pkg := source.URL + "/el/Packages/k/kiln-dist-devel-1.1-1.noarch.rpm"
	for i := range 2 {
		if status, body := get(t, client, pkg); status != http.StatusOK || !bytes.Equal(body, rpm) {
			t.Fatalf("GET %d: %d, %d bytes", i+1, status, len(body))
		}
	}
	if status, _ := get(t, client, "http://127.0.0.1:1/upstream/x.rpm"); status != http.StatusForbidden {
		t.Errorf("a host outside the target's repositories: %d, want 403", status)
	}
	files := bp.finish(log)
	mu.Lock()
	defer mu.Unlock()
	if reached != 1 || len(files) != 2 || files[0].Name != "kiln-dist-devel-1.1-1.noarch.rpm" || files[0].CacheHit || !files[1].CacheHit {
		t.Errorf("source reached %d times, files %+v; want 1, a miss and a hit", reached, files)
	}
	for _, want := range []string{"bootstrap: dnf reaches the package sources (" + source.URL + ") only",
		"package cache hit kiln-dist-devel-1.1-1.noarch.rpm", "package cache: 1 hits"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	if _, err := cache.Open(files[0].SHA256); err != nil {
		t.Errorf("the file is not in the package cache: %v", err)
	}

	// With the host's network, dnf reaches its repositories directly.
	s.b.cfg.DependencyNetwork = NetworkHost
	none, err := s.startBootstrapProxy(tgt, log)
	if err != nil || none != nil || none.args() != nil || none.env() != nil || none.finish(log) != nil {
		t.Errorf("host network: %v, %v", none, err)
	}
}

// The bootstrap dnf is given an https repository as the proxy sees it
// (upgraded back to https there), so its package files are captured; an
// http one and a key file are left as they are.
func TestBootstrapProxyNamesHTTPSRepositoriesForTheProxy(t *testing.T) {
	tgt := Target{Name: "el", Method: "dnf", Repositories: []Repository{
		{Name: "baseos", BaseURL: "https://mirror.example.org/almalinux/9/BaseOS/x86_64/os/", GPGKey: "file:///etc/kiln/alma.asc"},
		{Name: "local", BaseURL: "http://repo.example.org/el9/"},
	}}
	log := &syncBuffer{}
	var none *bootstrapProxy
	if got := none.repositories(tgt, log); got.Repositories[0].BaseURL != tgt.Repositories[0].BaseURL {
		t.Errorf("without a proxy (host network) the repository changed: %+v", got.Repositories[0])
	}
	got := (&bootstrapProxy{}).repositories(tgt, log)
	if got.Repositories[0].BaseURL != "http://mirror.example.org:443/almalinux/9/BaseOS/x86_64/os/" || got.Repositories[0].GPGKey != "file:///etc/kiln/alma.asc" {
		t.Errorf("https repository given as %+v", got.Repositories[0])
	}
	if got.Repositories[1] != tgt.Repositories[1] {
		t.Errorf("http repository changed: %+v", got.Repositories[1])
	}
	if tgt.Repositories[0].BaseURL != "https://mirror.example.org/almalinux/9/BaseOS/x86_64/os/" {
		t.Error("the target's own repositories were changed")
	}
	if !strings.Contains(log.String(), "repository https://mirror.example.org/almalinux/9/BaseOS/x86_64/os/ is fetched through the proxy as http://mirror.example.org:443/") {
		t.Errorf("log: %s", log.String())
	}
	if repo := dnfRepoFile(got); !strings.Contains(repo, "baseurl=http://mirror.example.org:443/almalinux/9/BaseOS/x86_64/os/\n") {
		t.Errorf("repository file:\n%s", repo)
	}
}
