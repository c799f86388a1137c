package itest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/internal/tlsconfig"
	"github.com/kiln-build/kiln/worker/buildroot"
	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/buildroot/rpmdisttest"
)

// gitServer serves repositories below a directory with git daemon on
// loopback.
type gitServer struct {
	base, url string
}

func newGitServer(t *testing.T) *gitServer {
	t.Helper()
	testenv.Tool(t, "git")
	base := t.TempDir()
	addr := freeAddr(t)
	host, port, _ := strings.Cut(addr, ":")
	p := start(t, "git", "git-daemon", "daemon", "--export-all", "--reuseaddr", "--base-path="+base, "--listen="+host, "--port="+port, base)
	_ = p
	c := &cluster{t: t}
	c.waitListening(addr)
	return &gitServer{base: base, url: "git://" + addr + "/"}
}

// repo makes a repository from a directory's files and returns its URL.
func (g *gitServer) repo(t *testing.T, name, from string) (string, string) {
	t.Helper()
	dir := filepath.Join(g.base, name)
	if err := exec.Command("cp", "-r", from+"/.", dir+"/").Run(); err != nil {
		os.MkdirAll(dir, 0o755)
		if out, err := exec.Command("cp", "-r", from+"/.", dir+"/").CombinedOutput(); err != nil {
			t.Fatalf("copy %s: %v %s", from, err, out)
		}
	}
	g.git(t, dir, "init", "-q", "-b", "master")
	return g.url + name, g.commit(t, name, "import")
}

func (g *gitServer) commit(t *testing.T, name, msg string) string {
	t.Helper()
	dir := filepath.Join(g.base, name)
	g.git(t, dir, "add", "-A")
	g.git(t, dir, "-c", "user.name=Kiln Tests", "-c", "user.email=tests@kiln.invalid", "commit", "-q", "--allow-empty", "-m", msg)
	return strings.TrimSpace(g.git(t, dir, "rev-parse", "HEAD"))
}

func (g *gitServer) git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// pipeline is a whole installation on loopback, mutual TLS on every gRPC
// connection as in production: publisher (pinning the coordinator's
// certificate) and mirror with
// the operator's key, a coordinator handing builds to the publisher, a
// worker with a containerd buildroot, and git served by git daemon.
type pipeline struct {
	c                     *cluster
	g                     *gitServer
	dir, target, repoName string
	pubCfg, mirrorAddr    string
	pubAddr               string
	publisher             *proc
	brCfg                 buildroot.Config
	workerTLS, workerCfg  string
	worker                *proc
	// rpm: the target is the stand-in RPM distribution's.
	rpm bool
}

func newPipeline(t *testing.T, coordinatorExtra func(g *gitServer) string) *pipeline {
	t.Helper()
	return newPipelineWith(t, coordinatorExtra, nil)
}

// newPipelineWith is newPipeline; with dist, its one target is an RPM
// target made with dnf from that distribution, its release builds rpms and
// its repository is an rpm repository.
func newPipelineWith(t *testing.T, coordinatorExtra func(g *gitServer) string, dist *rpmdisttest.Dist) *pipeline {
	t.Helper()
	return newPipelineReleases(t, coordinatorExtra, dist, "rel")
}

// newPipelineReleases is newPipelineWith with several releases, each
// publishing to its own repository <release>-<target>; the pipeline's
// repoName is the first one's.
func newPipelineReleases(t *testing.T, coordinatorExtra func(g *gitServer) string, dist *rpmdisttest.Dist, releases ...string) *pipeline {
	t.Helper()
	testenv.Root(t)
	for _, tool := range []string{"gpg", "apt-get"} {
		testenv.Tool(t, tool)
	}
	brCfg := buildroottest.Config(t)
	var target string
	format, repoFormat, suffix := "deb", "format: deb\n    suite: bookworm", `deb_suffix: "+rel{revision}"`
	if dist == nil {
		_, target = buildroottest.NewWith(t, brCfg, buildroottest.DebTarget)
	} else {
		target = dnfTarget
		brCfg.Targets = []buildroot.Target{dist.Target(target)}
		format, repoFormat, suffix = "rpm", "format: rpm", `rpm_suffix: ".rel{revision}"`
		b, err := buildroot.New(context.Background(), brCfg, buildroottest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Purge(context.Background()); b.Close() })
		var log strings.Builder
		if _, err := b.Create(context.Background(), target, &log); err != nil {
			t.Fatalf("chroot create: %v\n%s", err, tail(log.String(), 3000))
		}
	}
	dir := t.TempDir()
	g := newGitServer(t)
	extra := ""
	if coordinatorExtra != nil {
		extra = coordinatorExtra(g)
	}
	// The operator's key.
	gnupg := filepath.Join(dir, "gnupg")
	os.MkdirAll(gnupg, 0o700)
	gpg := func(args ...string) []byte {
		cmd := exec.Command("gpg", append([]string{"--batch", "--quiet", "--homedir", gnupg}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gpg %v: %v", args, err)
		}
		return out
	}
	gpg("--passphrase", "", "--quick-gen-key", "Kiln Test Repository <repo@kiln.invalid>", "ed25519", "sign", "never")
	os.WriteFile(filepath.Join(dir, "key.asc"), gpg("--armor", "--export-secret-keys"), 0o600)
	os.WriteFile(filepath.Join(dir, "pub.asc"), gpg("--armor", "--export"), 0o644)

	// Certificates: every connection is mutual TLS, as in production.
	pki := filepath.Join(dir, "pki")
	for n, role := range map[string]string{"coordinator": "coordinator", "publisher": "publisher", "builder": "worker", "jenkins": "client", "admin": "admin"} {
		if out, errOut, code := run(t, bin("coordinator"), "certs", "--dir", pki, "--name", n, "--role", role, "--host", "127.0.0.1"); code != 0 {
			t.Fatalf("certs: %s %s", out, errOut)
		}
	}
	files := func(n string) tlsconfig.Files {
		return tlsconfig.Files{Cert: filepath.Join(pki, n+".pem"), Key: filepath.Join(pki, n+"-key.pem"), CA: filepath.Join(pki, "ca.pem")}
	}
	tlsYAML := func(indent, n string) string {
		f := files(n)
		return fmt.Sprintf("%stls:\n%s  cert: %s\n%s  key: %s\n%s  ca: %s\n", indent, indent, f.Cert, indent, f.Key, indent, f.CA)
	}
	coordDER, _ := pem.Decode(mustRead(t, files("coordinator").Cert))
	coordPin := sha256.Sum256(coordDER.Bytes)
	os.WriteFile(filepath.Join(dir, "builder.token"), []byte("builder-secret\n"), 0o600)

	// Publisher and mirror.
	pubAddr, mirrorAddr := freeAddr(t), freeAddr(t)
	repoName := releases[0] + "-" + target
	var repos, rels strings.Builder
	for _, r := range releases {
		fmt.Fprintf(&repos, "  - name: %s-%s\n    %s\n", r, target, repoFormat)
		fmt.Fprintf(&rels, "  %s:\n    %s\n    targets:\n      %s: %s\n", r, suffix, target, format)
	}
	pubCfg := filepath.Join(dir, "publisher.yaml")
	os.WriteFile(pubCfg, []byte(fmt.Sprintf(`root: %s
signing:
  key_file: %s
repositories:
%sserve:
  listen: %s
%s  client_cert_sha256: [%x]
`, filepath.Join(dir, "publisher"), filepath.Join(dir, "key.asc"), repos.String(), pubAddr, tlsYAML("  ", "publisher"), coordPin)), 0o644)
	publisher := start(t, "publisher", "publisher", "serve", "--config", pubCfg)
	c := &cluster{t: t}
	c.waitListening(pubAddr)
	os.MkdirAll(filepath.Join(dir, "publisher", "public"), 0o755)
	start(t, "mirror", "mirror", "serve", "--root", filepath.Join(dir, "publisher", "public"), "--listen", mirrorAddr)
	c.waitListening(mirrorAddr)

	// Coordinator and a worker with the buildroot.
	jenkins := files("jenkins")
	c = &cluster{t: t, addr: freeAddr(t), httpAddr: freeAddr(t), state: t.TempDir(), clientTLS: &jenkins}
	coordCfg := filepath.Join(dir, "coordinator.yaml")
	os.WriteFile(coordCfg, []byte(fmt.Sprintf(`%sworker_tokens:
  builder: builder-secret
public_url: https://%s
heartbeat_interval: 1s
lost_after: 10s
releases:
%spublisher:
  address: %s
%s  retry_interval: 1s
%s`, tlsYAML("", "coordinator"), c.httpAddr, rels.String(), pubAddr, tlsYAML("  ", "coordinator"), extra)), 0o644)
	c.coord = start(t, "coordinator", "coordinator", "serve", "--config", coordCfg, "--state-dir", c.state, "--listen", c.addr, "--http-listen", c.httpAddr)
	c.waitListening(c.addr)
	c.connect()
	p := &pipeline{c: c, g: g, dir: dir, target: target, repoName: repoName, pubCfg: pubCfg, mirrorAddr: mirrorAddr, pubAddr: pubAddr, publisher: publisher,
		brCfg: brCfg, workerTLS: tlsYAML("", "builder"), rpm: dist != nil}
	p.worker = p.startWorker(t, workerOptions{})
	return p
}

// workerOptions changes the pipeline worker's configuration.
type workerOptions struct {
	// mirror replaces the targets' upstream mirror (a dnf target's
	// repositories' baseurl).
	mirror string
	// extra is appended to the config (top-level keys).
	extra string
	// build is appended to its build: section.
	build string
}

// startWorker writes the worker's configuration and starts it.
func (p *pipeline) startWorker(t *testing.T, o workerOptions) *proc {
	t.Helper()
	targets := p.brCfg.Targets
	if o.mirror != "" {
		targets = slices.Clone(targets)
		for i := range targets {
			targets[i].Mirror = o.mirror
			targets[i].Repositories = slices.Clone(targets[i].Repositories)
			for j := range targets[i].Repositories {
				targets[i].Repositories[j].BaseURL = o.mirror
			}
		}
	}
	j, _ := json.Marshal(targets)
	tyaml := targetsYAML(j)
	if p.rpm {
		tyaml = dnfTargetYAML(targets[0])
	}
	p.workerCfg = filepath.Join(p.dir, "worker.yaml")
	os.WriteFile(p.workerCfg, []byte(fmt.Sprintf(`coordinator: %s
%stoken_file: %s
name: builder
slots: 2
work_dir: %s
buildroot:
  address: %s
  namespace: %s
  state_dir: %s
  tmpfs_size: 2G
  memory: 2G
  package_cache: {dir: %s}
  targets: %s
%sbuild:
  cache_dir: %s
%s`, p.c.addr, p.workerTLS, filepath.Join(p.dir, "builder.token"), filepath.Join(p.dir, "work"), p.brCfg.Address, p.brCfg.Namespace,
		p.brCfg.StateDir, p.brCfg.PackageCache.Dir, tyaml, o.extra, filepath.Join(p.dir, "gitcache"), o.build)), 0o644)
	return start(t, "worker", "builder", "run", "--config", p.workerCfg)
}

// TestPackagePipeline runs the whole path with real processes: a package
// in git served on loopback, built by a worker in a containerd buildroot,
// handed to the publisher, served by a mirror and fetched by apt; then
// de-duplication, forced rebuilds with new revisions, verified rebuilds, a
// failing build, and a publisher that is down for a while.
func TestPackagePipeline(t *testing.T) {
	p := newPipeline(t, nil)
	c, g, dir, target, repoName, mirrorAddr, pubCfg, publisher := p.c, p.g, p.dir, p.target, p.repoName, p.mirrorAddr, p.pubCfg, p.publisher
	ctx := context.Background()
	helloURL, helloRev := g.repo(t, "kiln-hello", "../examples/hello")
	build := func(pkg, url string, extra ...string) (string, string, int) {
		args := append([]string{"build", "--release", "rel", "--target", target, "--package", pkg, "--source", url + "@master"}, extra...)
		return c.cli(args...)
	}

	// 1. Build and publish; apt fetches it from the mirror, checking the
	// signature chain with the operator's key.
	out, errOut, code := build("kiln-hello", helloURL, "--publish", "--wait")
	if code != 0 || !strings.Contains(out, "dpkg-buildpackage") || !strings.Contains(errOut, "publish: published") {
		t.Fatalf("first build: %d\n%s\n%s", code, tail(out, 3000), errOut)
	}
	first := jobID(t, errOut)
	show, _, _ := c.cli("jobs", "show", first, "--json")
	for _, want := range []string{`"version": "1.0+rel1"`, `"revision": "1"`, helloRev, `"chroot_digest"`, `"name": "debhelper"`, "kiln-hello_1.0+rel1_amd64.deb"} {
		if !strings.Contains(show, want) {
			t.Errorf("job %s lacks %s:\n%s", first, want, tail(show, 3000))
		}
	}
	aptFetch(t, dir, mirrorAddr, repoName, "kiln-hello", "1.0+rel1")
	// The worker told the coordinator which chroot it builds the target in.
	workers, _, _ := c.cli("workers", "list", "--json")
	if !strings.Contains(workers, `"chroot/`+target+`": "sha256:`) {
		t.Errorf("workers list lacks the chroot digest:\n%s", workers)
	}

	// 2. The same sources again: not built, the earlier result shown.
	out, errOut, code = build("kiln-hello", helloURL, "--json")
	if code != 0 || !strings.Contains(out, `"deduplicated": true`) || !strings.Contains(errOut, "already built by job "+first) {
		t.Fatalf("dedup: %d %s %s", code, out, errOut)
	}

	// 3. Forced: a rebuild with a higher revision.
	out, errOut, code = build("kiln-hello", helloURL, "--force", "--wait")
	if code != 0 || !strings.Contains(out, "1.0+rel2") {
		t.Fatalf("forced rebuild: %d\n%s\n%s", code, tail(out, 2000), errOut)
	}
	forced := jobID(t, errOut)
	show, _, _ = c.cli("jobs", "show", forced)
	if !strings.Contains(show, "rebuild:") || !regexp.MustCompile(`revision:\s+2\n`).MatchString(show) {
		t.Errorf("forced job:\n%s", show)
	}

	// 4. A verified rebuild of a reproducible package is byte-identical.
	_, errOut, code = c.cli("rebuild", "--verify", first)
	if code != 0 || !strings.Contains(errOut, "byte-identical to job "+first) {
		t.Fatalf("verify reproducible: %d %s", code, errOut)
	}

	// 5. An unreproducible one: the differing file is named, exit 1.
	unURL, _ := g.repo(t, "hello-unrepro", "../worker/pkgbuild/testdata/hello-unrepro")
	_, errOut, code = build("hello-unrepro", unURL, "--wait")
	if code != 0 {
		t.Fatalf("unreproducible build: %d %s", code, errOut)
	}
	_, errOut, code = c.cli("rebuild", "--verify", jobID(t, errOut))
	if code != 1 || !strings.Contains(errOut, "hello-unrepro_1.0+rel1_all.deb") || !strings.Contains(errOut, "differ") {
		t.Fatalf("verify unreproducible: %d %s", code, errOut)
	}

	// 6. A build that fails in the middle: exit 1 and its log.
	failURL, _ := g.repo(t, "hello-fail", "../worker/pkgbuild/testdata/hello-fail")
	out, errOut, code = build("hello-fail", failURL, "--wait")
	if code != 1 || !strings.Contains(errOut, "failed") || !strings.Contains(out, "dpkg-buildpackage") {
		t.Fatalf("failing build: %d\n%s\n%s", code, tail(out, 2000), errOut)
	}

	// 7. The publisher is down: the build waits for it and lands once it
	// is back.
	publisher.stop(t)
	os.WriteFile(filepath.Join(g.base, "kiln-hello", "NEWS"), []byte("second\n"), 0o644)
	g.commit(t, "kiln-hello", "second commit")
	var wg sync.WaitGroup
	var bout, berr string
	var bcode int
	wg.Add(1)
	go func() {
		defer wg.Done()
		bout, berr, bcode = build("kiln-hello", helloURL, "--publish", "--wait")
	}()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		r, err := c.client.ListJobs(ctx, nil)
		pending := false
		if err == nil {
			for _, j := range r.GetJobs() {
				if strings.HasPrefix(j.GetPublishState(), "pending (attempt") {
					pending = true
				}
			}
		}
		if pending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("publish never became pending while the publisher was down")
		}
		time.Sleep(200 * time.Millisecond)
	}
	start(t, "publisher", "publisher-again", "serve", "--config", pubCfg)
	wg.Wait()
	if bcode != 0 || !strings.Contains(berr, "publish: published") {
		t.Fatalf("publish after the publisher came back: %d\n%s\n%s", bcode, tail(bout, 2000), berr)
	}
	aptFetch(t, dir, mirrorAddr, repoName, "kiln-hello", "1.0+rel3")
}

func targetsYAML(j []byte) string {
	// JSON is YAML; the buildroot config's fields carry yaml tags equal to
	// their JSON names only where set explicitly, so re-key them.
	var ts []map[string]any
	json.Unmarshal(j, &ts)
	var b bytes.Buffer
	b.WriteString("\n")
	for _, t := range ts {
		fmt.Fprintf(&b, "    - name: %v\n      format: %v\n      method: %v\n      suite: %v\n      mirror: %v\n      variant: %v\n",
			t["Name"], t["Format"], t["Method"], t["Suite"], t["Mirror"], t["Variant"])
		if comps, ok := t["Components"].([]any); ok && len(comps) > 0 {
			fmt.Fprintf(&b, "      components: [%v]\n", joinAny(comps))
		}
		if pk, ok := t["Packages"].([]any); ok && len(pk) > 0 {
			fmt.Fprintf(&b, "      packages: [%v]\n", joinAny(pk))
		}
	}
	return b.String()
}

func joinAny(a []any) string {
	s := make([]string, len(a))
	for i, v := range a {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, ", ")
}

func jobID(t *testing.T, stderr string) string {
	t.Helper()
	for _, line := range strings.Split(stderr, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "job" && (f[2] == "queued" || f[2] == "queued,") {
			return f[1]
		}
	}
	t.Fatalf("no job id in %q", stderr)
	return ""
}

// aptFetch runs apt-get update and download against the mirror in an
// isolated apt configuration that trusts only the operator's key.
func aptFetch(t *testing.T, dir, mirror, repo, pkg, version string) {
	t.Helper()
	apt := filepath.Join(dir, "apt")
	opts := isolatedApt(apt, fmt.Sprintf("deb [signed-by=%s] http://%s/%s bookworm main", filepath.Join(dir, "pub.asc"), mirror, repo))
	os.MkdirAll(filepath.Join(apt, "dl"), 0o755)
	if out, err := exec.Command("apt-get", append(opts, "update")...).CombinedOutput(); err != nil || strings.Contains(string(out), "NO_PUBKEY") || strings.Contains(string(out), "W: ") {
		t.Fatalf("apt-get update: %v\n%s", err, out)
	}
	cmd := exec.Command("apt-get", append(opts, "download", pkg+"="+version)...)
	cmd.Dir = filepath.Join(apt, "dl")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apt-get download %s=%s: %v\n%s", pkg, version, err, out)
	}
	m, _ := filepath.Glob(filepath.Join(apt, "dl", pkg+"_*.deb"))
	if len(m) != 1 {
		t.Fatalf("downloaded %v", m)
	}
}

// isolatedApt makes an apt configuration in dir with source as its only
// source and returns the options that point apt-get and apt-cache at it.
func isolatedApt(dir, source string) []string {
	os.RemoveAll(dir)
	for _, d := range []string{"lists/partial", "cache/archives/partial", "etc/apt.conf.d", "etc/preferences.d"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "sources.list"), []byte(source+"\n"), 0o644)
	return []string{"-o", "Dir::Etc::SourceList=" + filepath.Join(dir, "sources.list"), "-o", "Dir::Etc::SourceParts=/dev/null",
		"-o", "Dir::State::Lists=" + filepath.Join(dir, "lists"), "-o", "Dir::Cache=" + filepath.Join(dir, "cache"),
		"-o", "Dir::Etc::Parts=" + filepath.Join(dir, "etc/apt.conf.d"), "-o", "Dir::Etc::PreferencesParts=" + filepath.Join(dir, "etc/preferences.d"),
		"-o", "APT::Sandbox::User=root"}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
