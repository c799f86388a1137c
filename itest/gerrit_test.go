package itest

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/gerrittest"
	"github.com/kiln-build/kiln/internal/tlsconfig"
)

// TestGerritReviewBuildVotes drives the coordinator binary from a Gerrit
// stand-in that speaks stream-events and gerrit review over SSH: a new
// patch set is built in a real buildroot from git served on loopback, and
// the Verified vote arrives for the right change, patch set and label.
func TestGerritReviewBuildVotes(t *testing.T) {
	keyDir := t.TempDir()
	keyFile := filepath.Join(keyDir, "id_ed25519")
	gerrit := gerrittest.Start(t, gerrittest.Options{Accounts: []gerrittest.Account{{User: "kiln", Key: gerrittest.WriteClientKey(t, keyFile)}}})
	knownHosts := filepath.Join(keyDir, "known_hosts")
	if err := gerrit.WriteKnownHosts(knownHosts); err != nil {
		t.Fatal(err)
	}

	p := newPipeline(t, func(g *gitServer) string {
		return fmt.Sprintf(`gerrit:
  servers:
    - name: review
      ssh: %s
      user: kiln
      private_key_file: %s
      known_hosts_file: %s
      git_url: %s{project}
  reconnect:
    min: 100ms
    max: 1s
  rules:
    - name: linux
      sources:
        - project: "{customer}/packages/{distribution}/{package}"
          role: combined
      where:
        customer: '[a-z]+'
        distribution: 'bookworm'
        fuel: '[0-9]+\.[0-9]+'
      branches:
        - branch: "{fuel}"
          release: rel
          targets: [%s]
          package: "{package}"
`, gerrit.Addr(), keyFile, knownHosts, g.url, "kiln-test-deb")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := gerrit.WaitStreams(ctx, 1); err != nil {
		t.Fatalf("the coordinator never opened stream-events: %v", err)
	}

	project := "acme/packages/bookworm/kiln-hello"
	_, base := p.g.repo(t, project, "../examples/hello")
	dir := filepath.Join(p.g.base, project)
	p.g.git(t, dir, "branch", "9.0", base)
	os.WriteFile(filepath.Join(dir, "hello.c"), []byte("#error this patch set does not compile\n"), 0o644)
	broken := p.g.commit(t, project, "a patch set that does not compile")
	p.g.git(t, dir, "update-ref", "refs/changes/34/1234/1", broken)
	p.g.git(t, dir, "reset", "-q", "--hard", base)

	event := fmt.Sprintf(`{"uploader":{"name":"Ann","email":"ann@example.com","username":"ann"},"patchSet":{"number":1,"revision":"%s","parents":["%s"],"ref":"refs/changes/34/1234/1","createdOn":1700000000,"kind":"REWORK"},"change":{"project":"%s","branch":"9.0","id":"I1234","number":1234,"subject":"break it","status":"NEW"},"project":"%s","refName":"refs/heads/9.0","changeKey":{"key":"I1234"},"type":"patchset-created","eventCreatedOn":1700000001}`,
		broken, base, project, project)
	gerrit.Send(event)
	reviews, err := gerrit.WaitReviews(ctx, 1)
	if err != nil {
		out, _, _ := p.c.cli("events", "list")
		jobs, _, _ := p.c.cli("jobs", "list")
		t.Fatalf("no review arrived: %v\nevents:\n%s\njobs:\n%s", err, out, jobs)
	}
	r := reviews[0]
	if r.Change != 1234 || r.PatchSet != 1 || r.Labels["Verified"] != "-1" || !strings.Contains(r.Message, "/jobs/") {
		t.Fatalf("review %+v", r)
	}
	// The log behind the link shows why.
	// It is served over HTTPS to a client certificate (a browser with one
	// imported), as the API is.
	link := r.Message[strings.Index(r.Message, "https://"):]
	link = strings.TrimRight(strings.Fields(link)[0], ").,")
	tc, err := tlsconfig.Client(*p.c.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	anonymous := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tc.RootCAs}}}
	if resp, err := anonymous.Get(link); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("the log link without a client certificate: %v %v", resp, err)
	}
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: tc}}).Get(link)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "this patch set does not compile") {
		t.Fatalf("log at %s: %d\n%s", link, resp.StatusCode, tail(string(body), 2000))
	}
	out, _, code := p.c.cli("events", "list", "--json")
	if code != 0 || !strings.Contains(out, `"action": "built"`) || !strings.Contains(out, project) {
		t.Fatalf("events list: %d %s", code, out)
	}
}
