package buildroot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/hashicorp/go-hclog"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/worker/executor"
)

// Sandbox is one throw-away buildroot: an overlay on a target's read-only
// chroot whose writable layer is a tmpfs of its own. Steps run one at a
// time, each in a new container on the same overlay.
type Sandbox struct {
	b       *Buildroot
	id      string
	target  string
	digest  string
	workDir string
	lease   leases.Lease
	viewKey string
	// dir is the sandbox's tmpfs; the overlay's upper and work dirs are in it.
	dir    string
	rootfs []mount.Mount
	logger hclog.Logger
	// sources are the package sources of a chroot that is not a
	// configured target's (a sealed release's); network steps reach them.
	sources []string
	// sealed is the configuration of a sealed release's chroot, which
	// is not a configured target (see OpenSealed).
	sealed *Target
	// packages are the package files the chroot was made from.
	packages []executor.PackageFile

	mu       sync.Mutex
	steps    int
	closed   bool
	lastExit time.Time
}

var _ executor.Sandbox = (*Sandbox)(nil)
var _ executor.SandboxOpener = (*Buildroot)(nil)

// Open makes a sandbox on target's current chroot with workDir bind-mounted
// at executor.SandboxWorkDir. workDir is given to the build user. A missing
// chroot or an unreachable containerd is an error.
func (b *Buildroot) Open(ctx context.Context, target, workDir string) (_ executor.Sandbox, err error) {
	return b.OpenSandbox(ctx, target, workDir)
}

// OpenSandbox is Open returning the concrete type.
func (b *Buildroot) OpenSandbox(ctx context.Context, target, workDir string) (_ *Sandbox, err error) {
	ctx = b.nsCtx(ctx)
	if !filepath.IsAbs(workDir) {
		return nil, fmt.Errorf("open sandbox for %s: work dir %q: give an absolute host path", target, workDir)
	}
	if st, err := os.Stat(workDir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("open sandbox for %s: work dir %q is not a directory", target, workDir)
	}
	s := &Sandbox{b: b, id: randomID(), target: target, workDir: workDir}
	s.logger = b.logger.With("sandbox", s.id, "target", target)
	s.viewKey = buildPrefix + s.id
	s.dir = filepath.Join(b.sandboxesDir(), s.id)

	// Holding importMu while the view is made keeps a concurrent refresh
	// from removing the chroot between lookup and view.
	b.importMu.Lock()
	s.lease, err = b.client.LeasesService().Create(ctx,
		leases.WithID("kiln-sandbox-"+s.id),
		leases.WithLabel(labelSandbox, s.id))
	if err != nil {
		b.importMu.Unlock()
		return nil, fmt.Errorf("open sandbox for %s: create lease: %w", target, err)
	}
	defer func() {
		if err != nil {
			if cerr := s.Close(context.WithoutCancel(ctx)); cerr != nil {
				s.logger.Warn("clean up failed sandbox", "error", cerr)
			}
		}
	}()
	lctx := leases.WithLease(ctx, s.lease.ID)
	var view []mount.Mount
	// A refresh in another process (worker chroot refresh) may remove the
	// chroot between lookup and view: look again then.
	for try := 0; ; try++ {
		var info TargetInfo
		info, err = b.Target(ctx, target)
		if err != nil {
			break
		}
		s.digest = info.Digest
		view, err = b.snapshotter().View(lctx, s.viewKey, info.Snapshot)
		if err == nil || !errdefs.IsNotFound(err) || try == 2 {
			if err != nil {
				err = fmt.Errorf("open sandbox for %s: view chroot %s: %w", target, info.Snapshot, err)
			}
			break
		}
	}
	b.importMu.Unlock()
	if err != nil {
		return nil, err
	}
	lower, err := lowerDirs(view)
	if err != nil {
		return nil, fmt.Errorf("open sandbox for %s: %w", target, err)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("open sandbox for %s: %w", target, err)
	}
	opts := fmt.Sprintf("size=%d,mode=0700", b.tmpfsBytes)
	if err := unix.Mount("tmpfs", s.dir, "tmpfs", unix.MS_NODEV|unix.MS_NOSUID, opts); err != nil {
		return nil, fmt.Errorf("open sandbox for %s: mount tmpfs on %s: %w", target, s.dir, err)
	}
	upper, work := filepath.Join(s.dir, "upper"), filepath.Join(s.dir, "work")
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, fmt.Errorf("open sandbox for %s: %w", target, err)
		}
	}
	s.rootfs = []mount.Mount{{
		Type:    "overlay",
		Source:  "overlay",
		Options: []string{"lowerdir=" + lower, "upperdir=" + upper, "workdir=" + work},
	}}
	if err := os.Chown(workDir, executor.BuildUID, executor.BuildGID); err != nil {
		return nil, fmt.Errorf("open sandbox for %s: give work dir %s to the build user: %w", target, workDir, err)
	}
	if s.packages, err = b.ChrootPackages(target, s.digest); err != nil {
		// The build can run; its record will lack the chroot's files.
		s.logger.Warn("no package list for the chroot", "error", err)
		err = nil
	}
	s.logger.Debug("sandbox open", "digest", s.digest)
	return s, nil
}

// lowerDirs returns the read-only directories of a view's mounts.
func lowerDirs(ms []mount.Mount) (string, error) {
	if len(ms) != 1 {
		return "", fmt.Errorf("view of chroot has %d mounts, want 1", len(ms))
	}
	m := ms[0]
	switch m.Type {
	case "bind":
		return m.Source, nil
	case "overlay":
		for _, o := range m.Options {
			if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
				return v, nil
			}
		}
	}
	return "", fmt.Errorf("view of chroot is a %s mount; the overlayfs snapshotter is needed", m.Type)
}

// ID names the sandbox in logs and in containerd.
func (s *Sandbox) ID() string { return s.id }

// ChrootDigest is the digest of the chroot the sandbox was made from.
func (s *Sandbox) ChrootDigest() string { return s.digest }

// ChrootPackages lists the package files the sandbox's chroot was made
// from (name, sha256, size; their bytes are in the package cache), or nil
// when they were not captured (see Buildroot.ChrootPackages).
func (s *Sandbox) ChrootPackages() []executor.PackageFile { return s.packages }

// LastExit is when the last step's process exited, as containerd saw it
// (before the step's container was torn down).
func (s *Sandbox) LastExit() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastExit
}

// Target is the name of the sandbox's target.
func (s *Sandbox) Target() string { return s.target }

// Exec runs a step in a new container on the sandbox's overlay. It returns
// an error only when the step could not be run or watched (an
// infrastructure failure); how the step ended is in the result.
func (s *Sandbox) Exec(ctx context.Context, step executor.Step, log io.Writer) (_ executor.StepResult, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return executor.StepResult{}, fmt.Errorf("sandbox %s: exec after close", s.id)
	}
	if len(step.Argv) == 0 {
		return executor.StepResult{}, errors.New("exec: empty command; give the program and its arguments")
	}
	if step.Dir != "" && !strings.HasPrefix(step.Dir, "/") {
		return executor.StepResult{}, fmt.Errorf("exec: dir %q: give an absolute path inside the sandbox, e.g. %s/src", step.Dir, executor.SandboxWorkDir)
	}
	for _, e := range step.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return executor.StepResult{}, fmt.Errorf("exec: environment entry %q: use KEY=VALUE", e)
		}
	}
	for _, h := range step.AllowHosts {
		if _, ok := normalOrigin(h); !ok {
			return executor.StepResult{}, fmt.Errorf("exec: allowed source %q: give http://host:port or https://host:port, e.g. http://deb.debian.org:80", h)
		}
	}
	// A network step in "sources" mode reaches the package sources only,
	// through a proxy listening in its own network namespace.
	viaProxy := step.Network && s.b.cfg.DependencyNetwork == NetworkSources
	s.steps++
	cid := fmt.Sprintf("kiln-%s-%d", s.id, s.steps)
	ctx = leases.WithLease(s.b.nsCtx(ctx), s.lease.ID)
	// Cleanup must happen even when ctx is cancelled.
	cctx := context.WithoutCancel(ctx)

	spec, cgroup := s.specOpts(cid, step, viaProxy)
	cont, err := s.b.client.NewContainer(ctx, cid,
		client.WithRuntime(s.b.cfg.Runtime, nil),
		client.WithContainerLabels(map[string]string{labelSandbox: s.id}),
		client.WithNewSpec(spec...))
	if err != nil {
		return executor.StepResult{}, fmt.Errorf("exec in sandbox %s: create container: %w", s.id, err)
	}
	defer func() {
		if derr := deleteContainer(cctx, cont); derr != nil && err == nil {
			err = fmt.Errorf("exec in sandbox %s: %w", s.id, derr)
		}
	}()

	out := &activityWriter{w: log}
	out.touch()
	task, err := cont.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, out, out), cio.WithFIFODir(s.b.fifoDir())), client.WithRootFS(s.rootfs))
	if err != nil {
		return executor.StepResult{}, fmt.Errorf("exec in sandbox %s: create task: %w", s.id, err)
	}
	// Wait before Start, so the exit cannot be missed.
	exitC, err := task.Wait(cctx)
	if err != nil {
		return executor.StepResult{}, fmt.Errorf("exec in sandbox %s: wait for task: %w", s.id, err)
	}
	var proxy *sourceProxy
	if viaProxy {
		// The task exists (its namespaces too) but runs nothing yet.
		proxy, err = s.startProxy(task.Pid(), step, out)
		if err != nil {
			return executor.StepResult{}, fmt.Errorf("exec in sandbox %s: %w", s.id, err)
		}
		defer proxy.Close()
	}
	if err := task.Start(ctx); err != nil {
		return executor.StepResult{}, fmt.Errorf("exec in sandbox %s: start %s: %w", s.id, step.Argv[0], err)
	}

	timeout := step.Timeout
	if timeout == 0 {
		timeout = s.b.cfg.StepTimeout
	}
	idle := step.IdleTimeout
	if idle == 0 {
		idle = s.b.cfg.IdleTimeout
	}
	var hard <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		hard = t.C
	}
	var tick <-chan time.Time
	if idle > 0 {
		period := min(idle/4, time.Second)
		t := time.NewTicker(max(period, 10*time.Millisecond))
		defer t.Stop()
		tick = t.C
	}

	var reason string
	var cancelled error
	var status client.ExitStatus
	kill := func(why string) {
		if reason == "" && cancelled == nil {
			reason = why
		}
		if kerr := task.Kill(cctx, syscall.SIGKILL, client.WithKillAll); kerr != nil && !errdefs.IsNotFound(kerr) {
			s.logger.Warn("kill step", "container", cid, "error", kerr)
		}
	}
wait:
	for {
		select {
		case status = <-exitC:
			break wait
		case <-hard:
			kill(fmt.Sprintf("time limit %s reached", timeout))
			hard = nil
		case <-tick:
			if since := out.since(); since >= idle {
				kill(fmt.Sprintf("stopped: no output for %s", idle))
				tick = nil
			}
		case <-ctx.Done():
			cancelled = ctx.Err()
			kill("")
			ctx = cctx
		}
	}
	s.lastExit = status.ExitTime()
	oom := s.b.oomKilled(cgroup)
	// The output is copied from the shim's FIFOs until the shim closes
	// them, after the step's last process is gone. Delete closes the
	// reading ends (cio's Cancel), and what was not copied by then would
	// be lost: a short step on a busy machine lost its whole output. Wait
	// for the copy first, for a while (a daemon the step left running
	// may hold the output open; Delete ends that copy).
	copied := make(chan struct{})
	go func() {
		task.IO().Wait()
		close(copied)
	}()
	select {
	case <-copied:
	case <-time.After(outputDrain):
		s.logger.Warn("step output still open after its exit; closing it", "container", cid, "waited", outputDrain)
	}
	var packages []executor.PackageFile
	if proxy != nil {
		// The step's processes are gone with its init: nothing uses
		// the proxy any more.
		proxy.Close()
		packages = proxy.packages()
		if line := cacheSummary(packages); line != "" {
			fmt.Fprint(out, line)
		}
		if line := proxy.indexSummary(); line != "" {
			fmt.Fprint(out, line)
		}
		if line := proxy.tunnelSummary(); line != "" {
			fmt.Fprint(out, line)
		}
	}
	if _, err := task.Delete(cctx); err != nil && !errdefs.IsNotFound(err) {
		return executor.StepResult{}, fmt.Errorf("exec in sandbox %s: delete task: %w", s.id, err)
	}
	if err := status.Error(); err != nil {
		return executor.StepResult{}, fmt.Errorf("exec in sandbox %s: task status: %w", s.id, err)
	}
	if cancelled != nil {
		return executor.StepResult{}, fmt.Errorf("exec in sandbox %s: %w", s.id, cancelled)
	}
	res := executor.StepResult{ExitCode: int(status.ExitCode()), Packages: packages}
	if oom {
		reason = "killed: out of memory"
	}
	if reason != "" {
		res.Reason = reason
		if res.ExitCode == 0 {
			res.ExitCode = 128 + int(syscall.SIGKILL)
		}
		fmt.Fprintf(log, "\nkiln: %s\n", reason)
	}
	return res, nil
}

// outputDrain is how long a step's output may keep coming after its exit.
const outputDrain = 5 * time.Second

// startProxy serves the package source proxy of a network step in the
// network namespace of the step's process pid.
func (s *Sandbox) startProxy(pid uint32, step executor.Step, log io.Writer) (*sourceProxy, error) {
	var allow []string
	if t, ok := s.b.cfg.Target(s.target); ok {
		allow = t.SourceHosts()
	}
	allow = append(append(allow, s.sources...), step.AllowHosts...)
	p := newSourceProxy(allow, log, s.b.cache, s.b.sourceTLS)
	ln, err := listenInNetns(pid, fmt.Sprintf("127.0.0.1:%d", proxyPort))
	if err != nil {
		return nil, fmt.Errorf("start the package source proxy: %w", err)
	}
	p.serve(ln)
	fmt.Fprintf(log, "kiln: network limited to the package sources (%s) through %s\n", p.allowed(), proxyURL)
	return p, nil
}

// specOpts builds the OCI spec of a step's container and returns the
// container's cgroup path. viaProxy gives a network step the package
// source proxy instead of the host's network.
func (s *Sandbox) specOpts(cid string, step executor.Step, viaProxy bool) ([]oci.SpecOpts, string) {
	cfg := s.b.cfg
	dir := step.Dir
	if dir == "" {
		dir = executor.SandboxWorkDir
	}
	cgroup := "/kiln/" + cfg.Namespace + "/" + cid
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
		"DEBIAN_FRONTEND=noninteractive",
	}
	if step.Root {
		env = append(env, "HOME=/root", "USER=root", "LOGNAME=root")
	} else {
		home := "/home/" + executor.BuildUser
		env = append(env, "HOME="+home, "USER="+executor.BuildUser, "LOGNAME="+executor.BuildUser)
	}
	if viaProxy {
		env = append(env, proxyEnv()...)
	}
	opts := []oci.SpecOpts{
		oci.WithProcessArgs(step.Argv...),
		oci.WithProcessCwd(dir),
		oci.WithEnv(append(env, step.Env...)),
		oci.WithHostname("kiln-build"),
		oci.WithCgroup(cgroup),
		oci.WithMounts([]specs.Mount{{
			Destination: executor.SandboxWorkDir,
			Type:        "bind",
			Source:      s.workDir,
			Options:     []string{"rbind", "rw", "nosuid", "nodev"},
		}}),
	}
	if step.Root {
		opts = append(opts, oci.WithUIDGID(0, 0))
	} else {
		opts = append(opts,
			oci.WithUIDGID(executor.BuildUID, executor.BuildGID),
			oci.WithNoNewPrivileges,
			dropCapabilities)
	}
	if step.Network && !viaProxy {
		opts = append(opts,
			oci.WithHostNamespace(specs.NetworkNamespace),
			oci.WithHostResolvconf,
			oci.WithHostHostsFile)
	}
	// Without WithHostNamespace the default spec gives the container a new,
	// empty network namespace: only a loopback device.
	if s.b.memory > 0 {
		opts = append(opts, oci.WithMemoryLimit(s.b.memory))
	}
	if cfg.CPUs > 0 {
		const period = 100000
		opts = append(opts, oci.WithCPUCFS(int64(cfg.CPUs*period), period))
	}
	if cfg.Pids > 0 {
		opts = append(opts, oci.WithPidsLimit(cfg.Pids))
	}
	return opts, cgroup
}

// dropCapabilities leaves a non-root step no effective capabilities.
func dropCapabilities(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	if s.Process == nil || s.Process.Capabilities == nil {
		return nil
	}
	c := s.Process.Capabilities
	c.Effective, c.Permitted, c.Inheritable, c.Ambient = nil, nil, nil, nil
	return nil
}

// oomKilled reports whether the kernel's OOM killer killed a process in the
// container's cgroup. The cgroup stays until the task is deleted.
func (b *Buildroot) oomKilled(cgroup string) bool {
	var file, key string
	if b.cgroupV2 {
		file, key = filepath.Join("/sys/fs/cgroup", cgroup, "memory.events"), "oom_kill"
	} else {
		file, key = filepath.Join("/sys/fs/cgroup/memory", cgroup, "memory.oom_control"), "oom_kill"
	}
	f, err := os.Open(file)
	if err != nil {
		b.logger.Debug("read oom count", "file", file, "error", err)
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		if k == key {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n > 0
		}
	}
	return false
}

// Close removes the sandbox's containers, view snapshot, tmpfs and lease,
// whatever state they are in, and the sandbox's chroot if it was retired
// and this was its last user.
func (s *Sandbox) Close(ctx context.Context) error {
	// A step still running in another goroutine is killed first, so that
	// its Exec returns and releases the sandbox.
	kctx := context.WithoutCancel(s.b.nsCtx(ctx))
	if conts, err := s.b.client.Containers(kctx, "labels."+labelSandbox+"=="+s.id); err == nil {
		for _, c := range conts {
			if task, err := c.Task(kctx, nil); err == nil {
				_ = task.Kill(kctx, syscall.SIGKILL, client.WithKillAll)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	ctx = context.WithoutCancel(s.b.nsCtx(ctx))
	var errs []error
	conts, err := s.b.client.Containers(ctx, "labels."+labelSandbox+"=="+s.id)
	if err != nil {
		errs = append(errs, fmt.Errorf("list containers: %w", err))
	}
	for _, c := range conts {
		if err := deleteContainer(ctx, c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeMount(s.dir); err != nil {
		errs = append(errs, err)
	}
	if err := s.b.snapshotter().Remove(ctx, s.viewKey); err != nil && !errdefs.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("remove snapshot %s: %w", s.viewKey, err))
	}
	if s.lease.ID != "" {
		if err := s.b.client.LeasesService().Delete(ctx, s.lease, leases.SynchronousDelete); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete lease %s: %w", s.lease.ID, err))
		}
	}
	s.b.importMu.Lock()
	if err := s.b.removeRetired(ctx); err != nil {
		errs = append(errs, err)
	}
	s.b.importMu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close sandbox %s: %w", s.id, err)
	}
	s.logger.Debug("sandbox closed")
	return nil
}

// activityWriter serializes a step's stdout and stderr into one log and
// remembers when the step last printed something.
type activityWriter struct {
	mu   sync.Mutex
	w    io.Writer
	last atomic.Int64
}

func (a *activityWriter) Write(p []byte) (int, error) {
	a.touch()
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.w.Write(p); err != nil {
		// A failing log must not block the step's output pipe.
		return len(p), nil
	}
	return len(p), nil
}

func (a *activityWriter) touch() { a.last.Store(time.Now().UnixNano()) }

func (a *activityWriter) since() time.Duration {
	return time.Since(time.Unix(0, a.last.Load()))
}
