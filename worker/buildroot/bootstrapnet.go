package buildroot

import (
	"fmt"
	"io"
	"net"

	"github.com/kiln-build/kiln/worker/executor"
)

// bootstrapProxy is the package source proxy of a bootstrap install (the
// worker host's dnf writing into a sandbox): served on the host's
// loopback for the length of one dnf run, it lets dnf reach the
// repositories it was given and nothing else, answers the package files
// dnf downloads from the package cache and keeps those it fetches there,
// as a network step's proxy does. The files it served are the install's
// StepResult.Packages, which go into the release's base.
type bootstrapProxy struct {
	p   *sourceProxy
	url string
}

// startBootstrapProxy serves the proxy to t's repositories, writing what
// it refuses and what the cache did to log. It is nil, and dnf reaches
// its repositories directly, when the dependency network is the host's.
func (s *Sandbox) startBootstrapProxy(t Target, log io.Writer) (*bootstrapProxy, error) {
	if s.b.cfg.DependencyNetwork == NetworkHost {
		return nil, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bootstrap dnf: start the package source proxy: %w", err)
	}
	p := newSourceProxy(t.SourceHosts(), log, s.b.cache, s.b.sourceTLS)
	p.serve(ln)
	bp := &bootstrapProxy{p: p, url: "http://" + ln.Addr().String()}
	fmt.Fprintf(log, "kiln: bootstrap: dnf reaches the package sources (%s) only, through %s\n", p.allowed(), bp.url)
	return bp, nil
}

// args are dnf's options that send every download through the proxy.
func (bp *bootstrapProxy) args() []string {
	if bp == nil {
		return nil
	}
	return []string{"--setopt=proxy=" + bp.url}
}

// env keeps the host's no_proxy from sending a loopback repository
// around the proxy.
func (bp *bootstrapProxy) env() []string {
	if bp == nil {
		return nil
	}
	return []string{"no_proxy=", "NO_PROXY="}
}

// close stops the proxy; finish does too.
func (bp *bootstrapProxy) close() {
	if bp != nil {
		bp.p.Close()
	}
}

// finish stops the proxy and returns the package files it served, with
// the cache's summary line written to log.
func (bp *bootstrapProxy) finish(log io.Writer) []executor.PackageFile {
	if bp == nil {
		return nil
	}
	bp.p.Close()
	files := bp.p.packages()
	if line := cacheSummary(files); line != "" {
		fmt.Fprint(log, line)
	}
	if line := bp.p.tunnelSummary(); line != "" {
		fmt.Fprint(log, line)
	}
	return files
}

// repositories returns t with its https repositories named as the proxy
// sees them (viaProxyURL), so that their package files are cached and
// captured like those of http ones, and says so in log. dnf still checks
// every package and repomd.xml against the keys.
func (bp *bootstrapProxy) repositories(t Target, log io.Writer) Target {
	if bp == nil {
		return t
	}
	repos := make([]Repository, len(t.Repositories))
	for i, r := range t.Repositories {
		if u := viaProxyURL(r.BaseURL); u != r.BaseURL {
			fmt.Fprintf(log, "kiln: bootstrap: repository %s is fetched through the proxy as %s, over https from there\n", r.BaseURL, u)
			r.BaseURL = u
		}
		r.GPGKey = viaProxyURL(r.GPGKey)
		repos[i] = r
	}
	t.Repositories = repos
	return t
}
