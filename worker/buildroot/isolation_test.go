package buildroot_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/kiln-build/kiln/worker/buildroot"
	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/executor"
)

func TestFileOfOneBuildNotVisibleToNext(t *testing.T) {
	t.Parallel()
	b, target := buildroottest.New(t)
	first, _ := open(t, b, target)
	execOK(t, first, executor.Step{Argv: sh("echo leak > /etc/kiln-leak; echo leak > /tmp/kiln-leak; rm /usr/bin/dpkg-deb; ! test -e /usr/bin/dpkg-deb"), Root: true})
	execOK(t, first, executor.Step{Argv: sh("echo leak > /home/kiln/kiln-leak")})
	// The same sandbox keeps its files from step to step.
	execOK(t, first, executor.Step{Argv: sh("test -e /etc/kiln-leak && test -e /tmp/kiln-leak && test -e /home/kiln/kiln-leak")})

	// A sandbox open at the same time and one opened after the first
	// closed see none of them.
	second, _ := open(t, b, target)
	check := executor.Step{Argv: sh("for f in /etc/kiln-leak /tmp/kiln-leak /home/kiln/kiln-leak; do if test -e $f; then echo found $f; fi; done; test -x /usr/bin/dpkg-deb || echo dpkg-deb deleted")}
	if out := execOK(t, second, check); out != "" {
		t.Errorf("concurrent sandbox sees the other's files: %s", out)
	}
	if err := first.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	third, _ := open(t, b, target)
	if out := execOK(t, third, check); out != "" {
		t.Errorf("next sandbox sees the previous one's files: %s", out)
	}
}

func TestTwoBuildsAtOnceFromOneBase(t *testing.T) {
	t.Parallel()
	b, target := buildroottest.New(t)
	// A rendezvous on the host answers only when both builds have
	// connected: the builds can only succeed when they run at the same
	// time.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var conns []net.Conn
		for len(conns) < 2 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			fmt.Fprintln(c, "both")
			c.Close()
		}
	}()
	// Each build reaches it through its own package source proxy, on the
	// same port in each build's own network namespace.
	dest := ln.Addr().String()
	step := executor.Step{
		Argv:       []string{"bash", "-c", proxyConnect(dest) + "; IFS= read -r line <&3; echo $line"},
		Root:       true,
		Network:    true,
		AllowHosts: []string{"https://" + dest},
		Timeout:    2 * time.Minute,
	}
	var wg sync.WaitGroup
	results := make([]string, 2)
	errs := make([]error, 2)
	for i := range 2 {
		sb, _ := open(t, b, target)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var log bytes.Buffer
			res, err := sb.Exec(context.Background(), step, &log)
			if err == nil && res.Failed() {
				err = fmt.Errorf("exit %d %s: %s", res.ExitCode, res.Reason, log.String())
			}
			results[i], errs[i] = withoutKilnLines(log.String()), err
		}()
	}
	wg.Wait()
	for i := range errs {
		if errs[i] != nil {
			t.Fatalf("build %d: %v", i, errs[i])
		}
		if results[i] != "HTTP/1.1 200 Connection established\nboth\n" {
			t.Errorf("build %d output %q, want both", i, results[i])
		}
	}
}

// hostAddr returns a non-loopback IPv4 address of this host.
func hostAddr(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			return ipn.IP.String()
		}
	}
	t.Fatal("no non-loopback IPv4 address on this host to test network isolation with")
	return ""
}

// proxyConnect is a bash command that asks the step's package source
// proxy for a tunnel to dest on fd 3 and prints the proxy's status line.
func proxyConnect(dest string) string {
	return fmt.Sprintf(`exec 3<>/dev/tcp/127.0.0.1/${http_proxy##*:} || exit 1
printf 'CONNECT %[1]s HTTP/1.1\r\nHost: %[1]s\r\n\r\n' >&3
IFS= read -r l <&3; echo "${l%%$'\r'}"
while IFS= read -r l <&3 && [ -n "${l%%$'\r'}" ]; do :; done`, dest)
}

// withoutKilnLines drops the lines the buildroot itself writes to a step's
// log.
func withoutKilnLines(log string) string {
	var out strings.Builder
	for _, l := range strings.SplitAfter(log, "\n") {
		if !strings.HasPrefix(l, "kiln: ") {
			out.WriteString(l)
		}
	}
	return out.String()
}

// listenOnHost opens a TCP listener on all of the host's addresses that
// greets every connection, and returns its port.
func listenOnHost(t *testing.T) int {
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "hello from the host")
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestBuildPhaseHasNoNetwork(t *testing.T) {
	t.Parallel()
	b, target := buildroottest.New(t)
	port := listenOnHost(t)
	sb, _ := open(t, b, target)
	for _, host := range []string{hostAddr(t), "127.0.0.1"} {
		connect := []string{"bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d && echo connected", host, port)}
		// The same step through the proxy with the listener allowed
		// connects: this shows the check below can fail.
		allowed := executor.Step{
			Argv: []string{"bash", "-c", proxyConnect(fmt.Sprintf("%s:%d", host, port)) + "; IFS= read -r l <&3; echo $l"},
			Root: true, Network: true, AllowHosts: []string{fmt.Sprintf("https://%s:%d", host, port)},
		}
		if out := withoutKilnLines(execOK(t, sb, allowed)); out != "HTTP/1.1 200 Connection established\nhello from the host\n" {
			t.Fatalf("network step through the proxy to allowed %s:%d: %q", host, port, out)
		}
		assertNoConnection(t, sb, executor.Step{Argv: connect}, fmt.Sprintf("build step to %s:%d", host, port))
	}
	// Not even root in a build step gets a network: only a loopback
	// device.
	out := execOK(t, sb, executor.Step{Argv: sh("ls /sys/class/net; cat /sys/class/net/lo/operstate"), Root: true})
	if out != "lo\nunknown\n" && out != "lo\ndown\n" {
		t.Errorf("network devices in a build step: %q, want only lo", out)
	}
	// Nor is there a proxy.
	assertNoConnection(t, sb, executor.Step{Argv: []string{"bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/3128 && echo connected"}}, "build step to a proxy")
}

// assertNoConnection runs step, which echoes "connected" once it has
// connected, and fails the test if it did.
func assertNoConnection(t *testing.T, sb executor.Sandbox, step executor.Step, what string) {
	t.Helper()
	var log bytes.Buffer
	res, err := sb.Exec(context.Background(), step, &log)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Failed() || strings.Contains(log.String(), "connected") {
		t.Errorf("%s connected: exit %d, output %q", what, res.ExitCode, log.String())
	}
}

func TestDependencyPhaseReachesOnlyPackageSources(t *testing.T) {
	t.Parallel()
	b, target := buildroottest.New(t)
	port := listenOnHost(t)
	sb, _ := open(t, b, target)
	dest := fmt.Sprintf("%s:%d", hostAddr(t), port)

	// apt fetches from the chroot's own mirror through the proxy.
	var log bytes.Buffer
	res, err := sb.Exec(context.Background(), executor.Step{
		Argv: []string{"apt-get", "update", "-o", "APT::Color=0"}, Root: true, Network: true,
		Timeout: 5 * time.Minute,
	}, &log)
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed() || strings.Contains(log.String(), "Err:") || !strings.Contains(log.String(), "InRelease") {
		t.Fatalf("apt-get update through the proxy: exit %d %s:\n%s", res.ExitCode, res.Reason, log.String())
	}

	tests := []struct {
		name    string
		script  string
		want    string
		wantLog string
	}{
		{
			name:   "direct connection has no route",
			script: fmt.Sprintf("(exec 3<>/dev/tcp/%s/%d) 2>/dev/null && echo connected || echo failed", hostAddr(t), port),
			want:   "failed\n",
		},
		{
			name:    "tunnel to a host that is not a source",
			script:  proxyConnect(dest),
			want:    "HTTP/1.1 403 Forbidden\n",
			wantLog: "kiln: proxy: refused CONNECT " + dest + ": https://" + dest + " is not a package source",
		},
		{
			name: "request to a host that is not a source",
			script: fmt.Sprintf(`exec 3<>/dev/tcp/127.0.0.1/${http_proxy##*:}
printf 'GET http://%[1]s/ HTTP/1.1\r\nHost: %[1]s\r\nConnection: close\r\n\r\n' >&3
IFS= read -r l <&3; echo "${l%%$'\r'}"`, dest),
			want:    "HTTP/1.1 403 Forbidden\n",
			wantLog: "buildroot.dependency_network: host",
		},
		{
			name: "apt from a host that is not a source",
			script: fmt.Sprintf(`echo 'deb [trusted=yes] http://%s/debian bookworm main' > /etc/apt/sources.list.d/other.list
apt-get update -o APT::Color=0 >/dev/null 2>&1 && echo updated || echo failed`, dest),
			want:    "failed\n",
			wantLog: "refused GET http://" + dest + "/debian/dists/bookworm/InRelease",
		},
	}
	for _, tt := range tests {
		var log bytes.Buffer
		res, err := sb.Exec(context.Background(), executor.Step{Argv: []string{"bash", "-c", tt.script}, Root: true, Network: true}, &log)
		if err != nil {
			t.Fatal(err)
		}
		if got := withoutKilnLines(log.String()); got != tt.want || res.Failed() {
			t.Errorf("%s: exit %d, output %q, want %q", tt.name, res.ExitCode, log.String(), tt.want)
		}
		if !strings.Contains(log.String(), tt.wantLog) {
			t.Errorf("%s: log does not say %q:\n%s", tt.name, tt.wantLog, log.String())
		}
	}
}

func TestHostDependencyNetworkReachesHost(t *testing.T) {
	t.Parallel()
	cfg := buildroottest.Config(t)
	cfg.DependencyNetwork = buildroot.NetworkHost
	b, target := buildroottest.NewWith(t, cfg, buildroottest.DebTarget)
	port := listenOnHost(t)
	sb, _ := open(t, b, target)
	for _, host := range []string{hostAddr(t), "127.0.0.1"} {
		connect := []string{"bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d && echo connected", host, port)}
		if out := execOK(t, sb, executor.Step{Argv: connect, Root: true, Network: true}); out != "connected\n" {
			t.Errorf("network step in host mode to %s: %q, want connected", host, out)
		}
		assertNoConnection(t, sb, executor.Step{Argv: connect}, fmt.Sprintf("build step in host mode to %s:%d", host, port))
	}
}

func TestMemoryHogKilledAsOutOfMemory(t *testing.T) {
	t.Parallel()
	cfg := buildroottest.Config(t)
	cfg.Memory = "64M"
	b, target := buildroottest.NewWith(t, cfg, buildroottest.DebTarget)
	sb, _ := open(t, b, target)
	var log bytes.Buffer
	// tail keeps the whole "line" of /dev/zero in memory.
	res, err := sb.Exec(context.Background(), executor.Step{Argv: []string{"tail", "/dev/zero"}}, &log)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reason != "killed: out of memory" || res.ExitCode == 0 {
		t.Errorf("memory hog: exit %d, reason %q; want killed: out of memory", res.ExitCode, res.Reason)
	}
	if !strings.Contains(log.String(), "killed: out of memory") {
		t.Errorf("log does not say why: %q", log.String())
	}
	// A step within the limit is not reported as out of memory.
	if out := execOK(t, sb, executor.Step{Argv: sh("head -c 16M /dev/zero | wc -c")}); out != "16777216\n" {
		t.Errorf("small step output %q", out)
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	b, target := buildroottest.New(t)
	tests := []struct {
		name       string
		step       executor.Step
		wantReason string
		wantExit   int
		maxTime    time.Duration
	}{
		{
			name:       "silent build stopped by idle limit",
			step:       executor.Step{Argv: sh("echo working; sleep 60"), IdleTimeout: time.Second},
			wantReason: "stopped: no output for 1s",
			wantExit:   137,
			maxTime:    45 * time.Second, // the step would sleep 60 s
		},
		{
			name:     "build that keeps printing is not idle",
			step:     executor.Step{Argv: sh("for i in $(seq 15); do echo $i; sleep 0.3; done"), IdleTimeout: 2 * time.Second},
			wantExit: 0,
			maxTime:  time.Minute,
		},
		{
			name:       "hard time limit",
			step:       executor.Step{Argv: sh("while true; do echo busy; sleep 0.2; done"), Timeout: 2 * time.Second, IdleTimeout: time.Minute},
			wantReason: "time limit 2s reached",
			wantExit:   137,
			maxTime:    2 * time.Minute, // the step would never end
		},
		{
			name:     "build failure is a result",
			step:     executor.Step{Argv: sh("echo failing; exit 3")},
			wantExit: 3,
			maxTime:  time.Minute,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb, _ := open(t, b, target)
			var log bytes.Buffer
			start := time.Now()
			res, err := sb.Exec(context.Background(), tt.step, &log)
			if err != nil {
				t.Fatal(err)
			}
			if res.Reason != tt.wantReason || res.ExitCode != tt.wantExit {
				t.Errorf("exit %d, reason %q; want exit %d, reason %q; output %q", res.ExitCode, res.Reason, tt.wantExit, tt.wantReason, log.String())
			}
			if tt.wantReason != "" && !strings.Contains(log.String(), tt.wantReason) {
				t.Errorf("log does not say %q: %q", tt.wantReason, log.String())
			}
			if d := time.Since(start); d > tt.maxTime {
				t.Errorf("took %s, want under %s", d, tt.maxTime)
			}
		})
	}
}

func TestCancelledStepIsAnError(t *testing.T) {
	t.Parallel()
	b, target := buildroottest.New(t)
	sb, _ := open(t, b, target)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := sb.Exec(ctx, executor.Step{Argv: sh("sleep 60")}, &bytes.Buffer{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled step: err = %v, want context.DeadlineExceeded", err)
	}
	// The sandbox is still usable.
	execOK(t, sb, executor.Step{Argv: []string{"true"}})
}

func TestOpenMissingChroot(t *testing.T) {
	t.Parallel()
	b, _ := buildroottest.New(t)
	_, err := b.Open(context.Background(), "no-such-target", t.TempDir())
	if !errors.Is(err, buildroot.ErrChrootMissing) {
		t.Errorf("open missing target: err = %v, want ErrChrootMissing", err)
	}
}

func TestExecutorRunsCommandJob(t *testing.T) {
	t.Parallel()
	b, target := buildroottest.New(t)
	tests := []struct {
		name    string
		job     executor.Job
		want    executor.Result
		wantErr error
		file    string
	}{
		{
			name: "success",
			job:  executor.Job{ID: "ok", Command: []string{"sh", "-c", "id -un > /build/who; echo $KILN_X >> /build/who"}, Env: []string{"KILN_X=42"}, Labels: map[string]string{"target": target}},
			file: "kiln\n42\n",
		},
		{
			name: "failure",
			job:  executor.Job{ID: "fail", Command: []string{"sh", "-c", "exit 4"}, Labels: map[string]string{"target": target}},
			want: executor.Result{ExitCode: 4, Reason: "exit status 4"},
		},
		{
			name:    "missing chroot",
			job:     executor.Job{ID: "missing", Command: []string{"true"}, Labels: map[string]string{"target": "absent"}},
			wantErr: buildroot.ErrChrootMissing,
		},
		{
			name:    "package build",
			job:     executor.Job{ID: "pkg", Build: &executor.PackageBuild{}, Labels: map[string]string{"target": target}},
			wantErr: executor.ErrUnsupported,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.job.WorkDir = t.TempDir()
			res, err := b.Run(context.Background(), tt.job, &bytes.Buffer{})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != tt.want.ExitCode || res.Reason != tt.want.Reason {
				t.Errorf("result %+v, want %+v", res, tt.want)
			}
			if tt.file != "" {
				got, err := os.ReadFile(filepath.Join(tt.job.WorkDir, "who"))
				if err != nil || string(got) != tt.file {
					t.Errorf("work dir file = %q, %v; want %q", got, err, tt.file)
				}
			}
		})
	}
}

func TestDebianPackageBuiltAsBuildUser(t *testing.T) {
	t.Parallel()
	b, target := buildroottest.New(t)
	sb, work := open(t, b, target)
	src := filepath.Join(work, "hello-kiln")
	if out, err := exec.Command("cp", "-a", "testdata/hello-kiln", src).CombinedOutput(); err != nil {
		t.Fatalf("copy source: %v: %s", err, out)
	}
	if out, err := exec.Command("chown", "-R", "1000:1000", src).CombinedOutput(); err != nil {
		t.Fatalf("chown source: %v: %s", err, out)
	}
	// Dependencies are already in the chroot: check them as root.
	execOK(t, sb, executor.Step{Argv: []string{"dpkg-checkbuilddeps"}, Dir: "/build/hello-kiln", Root: true})
	var log bytes.Buffer
	res, err := sb.Exec(context.Background(), executor.Step{
		Argv: sh("test $(id -u) = 1000 && dpkg-buildpackage -us -uc -b"),
		Dir:  "/build/hello-kiln",
	}, &log)
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed() {
		t.Fatalf("dpkg-buildpackage: exit %d %s:\n%s", res.ExitCode, res.Reason, log.String())
	}
	deb := filepath.Join(work, "hello-kiln_1.0_all.deb")
	st, err := os.Stat(deb)
	if err != nil {
		t.Fatalf("no .deb in the work dir: %v\nlog:\n%s", err, log.String())
	}
	if st.Sys() != nil {
		if uid := fileUID(st); uid != 1000 {
			t.Errorf(".deb owned by uid %d, want the build user 1000", uid)
		}
	}
	out, err := exec.Command("dpkg-deb", "--contents", deb).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "./usr/bin/hello-kiln") || !strings.Contains(string(out), "root/root") {
		t.Errorf("dpkg-deb --contents: %v\n%s", err, out)
	}
}

func TestRPMBuiltInRPMTarget(t *testing.T) {
	t.Parallel()
	b, target := buildroottest.NewRPM(t)
	infos, err := b.Targets(context.Background())
	if err != nil || len(infos) != 1 || infos[0].Format != "rpm" {
		t.Fatalf("targets = %+v, %v; want one rpm target", infos, err)
	}
	sb, work := open(t, b, target)
	if out, err := exec.Command("cp", "testdata/hello-kiln-rpm/hello-kiln.spec", work).CombinedOutput(); err != nil {
		t.Fatalf("copy spec: %v: %s", err, out)
	}
	var log bytes.Buffer
	res, err := sb.Exec(context.Background(), executor.Step{
		Argv: sh("rpmbuild --define '_topdir /build/rpmbuild' -bb /build/hello-kiln.spec"),
	}, &log)
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed() {
		t.Fatalf("rpmbuild: exit %d %s:\n%s", res.ExitCode, res.Reason, log.String())
	}
	rpm := filepath.Join(work, "rpmbuild", "RPMS", "noarch", "hello-kiln-1.0-1.noarch.rpm")
	out, err := exec.Command("rpm", "-qlp", rpm).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "/usr/bin/hello-kiln") {
		t.Errorf("rpm -qlp %s: %v\n%s\nbuild log:\n%s", rpm, err, out, log.String())
	}
}

func TestCgroupLimitsApplied(t *testing.T) {
	t.Parallel()
	cfg := buildroottest.Config(t)
	cfg.Memory = "300M"
	cfg.CPUs = 0.5
	cfg.Pids = 77
	b, target := buildroottest.NewWith(t, cfg, buildroottest.DebTarget)
	sb, work := open(t, b, target)
	// The step runs until the test has read its cgroup from the host.
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		_, err := sb.Exec(context.Background(), executor.Step{Argv: sh("echo up; while ! test -e /build/go; do sleep 0.1; done")}, &notifyWriter{started: started})
		done <- err
	}()
	<-started
	// cgroup v1 has a hierarchy per controller; v2 one for all.
	read := func(names ...string) string {
		for _, n := range names {
			matches, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", n))
			if len(matches) == 1 {
				data, err := os.ReadFile(matches[0])
				if err == nil {
					return strings.TrimSpace(string(data))
				}
			}
		}
		return "(not found)"
	}
	ns := cfg.Namespace
	got := []string{
		read("memory/kiln/"+ns+"/*/memory.limit_in_bytes", "kiln/"+ns+"/*/memory.max"),
		read("pids/kiln/"+ns+"/*/pids.max", "kiln/"+ns+"/*/pids.max"),
		read("cpu,cpuacct/kiln/"+ns+"/*/cpu.cfs_quota_us", "cpu/kiln/"+ns+"/*/cpu.cfs_quota_us", "kiln/"+ns+"/*/cpu.max"),
	}
	if err := os.WriteFile(filepath.Join(work, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := []string{"314572800", "77", "50000"}
	if got[2] == "50000 100000" {
		got[2] = "50000"
	}
	if !slices.Equal(got, want) {
		t.Errorf("memory, pids, cpu quota of the build's cgroup: %q, want %q", got, want)
	}
}

func TestCloseStopsRunningStepAndLeavesNothing(t *testing.T) {
	t.Parallel()
	cfg := buildroottest.Config(t)
	b, target := buildroottest.NewWith(t, cfg, buildroottest.DebTarget)
	sb, err := b.Open(context.Background(), target, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		w := &notifyWriter{started: started}
		_, err := sb.Exec(context.Background(), executor.Step{Argv: sh("echo up; sleep 600")}, w)
		done <- err
	}()
	<-started
	start := time.Now()
	if err := sb.Close(context.Background()); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("exec ended with %v", err)
	}
	// The step sleeps 600 s: a Close that waited for it instead of
	// stopping it would take that long. The bound is far from both, so a
	// loaded machine (a close took 27 s under a load of 11) does not fail it.
	if d := time.Since(start); d > 5*time.Minute {
		t.Errorf("close took %s: it waited for the step instead of stopping it", d)
	}
	c, err := client.New(cfg.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := leftovers(t, c, namespaces.WithNamespace(context.Background(), cfg.Namespace), cfg); len(got) != 0 {
		t.Errorf("after close, left behind: %v", got)
	}
}

type notifyWriter struct {
	once    sync.Once
	started chan struct{}
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.started) })
	return len(p), nil
}

func TestExecRejectsBadSteps(t *testing.T) {
	t.Parallel()
	b, target := buildroottest.New(t)
	sb, _ := open(t, b, target)
	tests := []struct {
		name    string
		step    executor.Step
		wantErr string
	}{
		{name: "no command", step: executor.Step{}, wantErr: "empty command"},
		{name: "relative dir", step: executor.Step{Argv: []string{"true"}, Dir: "src"}, wantErr: `dir "src"`},
		{name: "env without value", step: executor.Step{Argv: []string{"true"}, Env: []string{"DEB_BUILD_OPTIONS"}}, wantErr: `entry "DEB_BUILD_OPTIONS"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sb.Exec(context.Background(), tt.step, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}
