package buildroot

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/worker/pkgcache"
)

// Names and labels of what a Buildroot keeps in containerd.
const (
	// Committed chroot snapshots are named chrootPrefix + target + "@" +
	// digest.
	chrootPrefix = "kiln/chroot/"
	// A sandbox's read-only view of its base is buildPrefix + sandbox id.
	buildPrefix = "kiln/build/"
	// A chroot being imported is importPrefix + target + "/" + random.
	importPrefix = "kiln/import/"

	labelTarget  = "kiln.target"
	labelFormat  = "kiln.format"
	labelDigest  = "kiln.digest"
	labelCreated = "kiln.created"
	// labelRetired marks a chroot replaced by a newer one; it is removed
	// as soon as no sandbox uses it.
	labelRetired = "kiln.retired"
	labelSandbox = "kiln.sandbox"
	labelGCRoot  = "containerd.io/gc.root"
)

// ErrChrootMissing is returned when a target has no chroot in containerd.
var ErrChrootMissing = errors.New("chroot missing")

// Buildroot makes sandboxes from committed chroot snapshots in containerd.
// It implements executor.SandboxOpener and executor.Executor.
type Buildroot struct {
	cfg        Config
	logger     hclog.Logger
	client     *client.Client
	memory     uint64
	tmpfsBytes uint64
	cgroupV2   bool
	// cache is the package cache; nil when it is off.
	cache *pkgcache.Cache
	// layers is the build-dependency layer cache; nil when it is off.
	layers *layerCache
	// sourceTLS is how the package source proxy checks https sources;
	// nil: against the host's CAs.
	sourceTLS *tls.Config
	// importMu serializes imports and the removal of retired chroots.
	importMu sync.Mutex
	// sealedMu serializes making the chroots of sealed releases.
	sealedMu sync.Mutex
}

// TargetInfo is a target's current chroot.
type TargetInfo struct {
	Name string `json:"name"`
	// Digest is the sha256 of the chroot's content as imported.
	Digest string `json:"digest"`
	// Format is "deb" or "rpm".
	Format  string    `json:"format"`
	Created time.Time `json:"created"`
	// Snapshot is the containerd snapshot's name.
	Snapshot string `json:"snapshot"`
	// Retired lists older snapshots of the target still used by builds.
	Retired []string `json:"retired,omitempty"`
}

// Option changes what New and Dial make.
type Option func(*options)

type options struct {
	registerer prometheus.Registerer
}

// WithMetrics registers the Buildroot's metrics (the package cache's) with
// reg.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(o *options) { o.registerer = reg }
}

// New dials containerd at cfg.Address and removes whatever a previous run
// left in cfg.Namespace: build containers and tasks, leases, build and
// import snapshots, sandbox tmpfs mounts, output pipes, and retired chroots.
// Only the worker that runs builds in the namespace calls New; tools that
// manage chroots beside it use Dial. logger is used as given (the caller
// names it).
func New(ctx context.Context, cfg Config, logger hclog.Logger, opts ...Option) (*Buildroot, error) {
	b, err := Dial(ctx, cfg, logger, opts...)
	if err != nil {
		return nil, err
	}
	if err := b.cleanup(b.nsCtx(ctx)); err != nil {
		b.Close()
		return nil, fmt.Errorf("remove leftovers of a previous run: %w", err)
	}
	return b, nil
}

// Dial connects to containerd at cfg.Address without touching what is in
// cfg.Namespace, so that chroots can be managed while a worker builds. It
// opens the package cache (cfg.PackageCache), which processes share.
func Dial(ctx context.Context, cfg Config, logger hclog.Logger, opts ...Option) (*Buildroot, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	memory, _ := ParseSize(cfg.Memory)
	tmpfsBytes, _ := ParseSize(cfg.TmpfsSize)
	if _, err := os.Stat(cfg.Address); err != nil {
		return nil, fmt.Errorf("containerd socket %s: %w (start containerd: scripts/containerd.sh start)", cfg.Address, err)
	}
	c, err := client.New(cfg.Address,
		client.WithDefaultNamespace(cfg.Namespace),
		client.WithDefaultRuntime(cfg.Runtime),
		client.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", cfg.Address, err)
	}
	b := &Buildroot{
		cfg:        cfg,
		logger:     logger,
		client:     c,
		memory:     memory,
		tmpfsBytes: tmpfsBytes,
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		b.cgroupV2 = true
	}
	if cfg.SourceCAFile != "" {
		if b.sourceTLS, err = sourceTLSConfig(cfg.SourceCAFile); err != nil {
			c.Close()
			return nil, err
		}
	}
	if _, err := c.Version(b.nsCtx(ctx)); err != nil {
		c.Close()
		return nil, fmt.Errorf("containerd at %s does not answer: %w", cfg.Address, err)
	}
	if !cfg.PackageCache.Disabled {
		maxSize, _ := ParseSize(cfg.PackageCache.MaxSize)
		b.cache, err = pkgcache.Open(pkgcache.Config{Dir: cfg.PackageCache.Dir, MaxSize: int64(maxSize)},
			logger.Named("package_cache"), pkgcache.NewMetrics(o.registerer))
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("buildroot.package_cache: %w", err)
		}
		if !cfg.LayerCache.Disabled {
			maxSize, _ := ParseSize(cfg.LayerCache.MaxSize)
			if b.layers, err = openLayerCache(cfg.LayerCache.Dir, int64(maxSize), newLayerMetrics(o.registerer)); err != nil {
				c.Close()
				return nil, err
			}
		}
	}
	return b, nil
}

// sourceTLSConfig trusts the host's CAs and those in the PEM file.
func sourceTLSConfig(file string) (*tls.Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("buildroot.source_ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("buildroot.source_ca_file %s: no PEM certificate in it: give the CA certificates of the https package sources, PEM-encoded", file)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// Close closes the connection to containerd; sandboxes must be closed first.
func (b *Buildroot) Close() error {
	return b.client.Close()
}

// PackageCache is the worker's package cache, where the package files of
// StepResult.Packages and ChrootPackages are kept; nil when it is off.
func (b *Buildroot) PackageCache() *pkgcache.Cache { return b.cache }

// Config returns the configuration in use, with defaults applied.
func (b *Buildroot) Config() Config { return b.cfg }

func (b *Buildroot) nsCtx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, b.cfg.Namespace)
}

func (b *Buildroot) snapshotter() snapshots.Snapshotter {
	return b.client.SnapshotService(b.cfg.Snapshotter)
}

// sandboxesDir holds one tmpfs mount per open sandbox.
func (b *Buildroot) sandboxesDir() string {
	return filepath.Join(b.cfg.StateDir, b.cfg.Namespace, "sandboxes")
}

// fifoDir holds the named pipes of the steps' output (not containerd's
// default /run/containerd/fifo, which belongs to the host's containerd).
func (b *Buildroot) fifoDir() string {
	return filepath.Join(b.cfg.StateDir, b.cfg.Namespace, "fifo")
}

// cleanup removes everything in the namespace that belongs to no one now.
func (b *Buildroot) cleanup(ctx context.Context) error {
	containers, err := b.client.Containers(ctx)
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	for _, c := range containers {
		b.logger.Info("removing leftover container", "container", c.ID())
		if err := deleteContainer(ctx, c); err != nil {
			return err
		}
	}
	sn := b.snapshotter()
	var leftovers []string
	err = sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind != snapshots.KindCommitted {
			leftovers = append(leftovers, info.Name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	for _, name := range leftovers {
		b.logger.Info("removing leftover snapshot", "snapshot", name)
		if err := sn.Remove(ctx, name); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove snapshot %s: %w", name, err)
		}
	}
	// Leases go after their snapshots: removed explicitly, a snapshot
	// leaves its parent's list of children; collected by containerd 1.6's
	// garbage collector, it would stay there and pin the chroot forever.
	ls := b.client.LeasesService()
	all, err := ls.List(ctx)
	if err != nil {
		return fmt.Errorf("list leases: %w", err)
	}
	for _, l := range all {
		b.logger.Info("removing leftover lease", "lease", l.ID)
		if err := ls.Delete(ctx, l, leases.SynchronousDelete); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete lease %s: %w", l.ID, err)
		}
	}
	entries, err := os.ReadDir(b.sandboxesDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("list sandbox mounts: %w", err)
	}
	for _, e := range entries {
		dir := filepath.Join(b.sandboxesDir(), e.Name())
		b.logger.Info("removing leftover sandbox mount", "dir", dir)
		if err := removeMount(dir); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(b.fifoDir()); err != nil {
		return fmt.Errorf("remove output pipes: %w", err)
	}
	b.importMu.Lock()
	defer b.importMu.Unlock()
	return b.removeRetired(ctx)
}

// deleteContainer kills a container's task, if any, and deletes both.
func deleteContainer(ctx context.Context, c client.Container) error {
	task, err := c.Task(ctx, nil)
	if err == nil {
		if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete task of container %s: %w", c.ID(), err)
		}
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("load task of container %s: %w", c.ID(), err)
	}
	if err := c.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container %s: %w", c.ID(), err)
	}
	return nil
}

// removeMount unmounts dir (if mounted) and removes it.
func removeMount(dir string) error {
	for {
		err := unix.Unmount(dir, unix.MNT_DETACH)
		if err != nil {
			break // EINVAL: not (or no longer) a mount point
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// Targets lists the targets that have a chroot in containerd.
func (b *Buildroot) Targets(ctx context.Context) ([]TargetInfo, error) {
	ctx = b.nsCtx(ctx)
	chroots, err := b.chroots(ctx)
	if err != nil {
		return nil, err
	}
	var out []TargetInfo
	byName := map[string]int{}
	for _, c := range chroots {
		if c.retired {
			continue
		}
		if i, ok := byName[c.info.Name]; ok {
			// Two current chroots (a refresh crashed before retiring
			// the old one): the newer wins.
			if c.info.Created.After(out[i].Created) {
				out[i].Retired = append(out[i].Retired, out[i].Snapshot)
				retired := out[i].Retired
				out[i] = c.info
				out[i].Retired = retired
			} else {
				out[i].Retired = append(out[i].Retired, c.info.Snapshot)
			}
			continue
		}
		byName[c.info.Name] = len(out)
		out = append(out, c.info)
	}
	for _, c := range chroots {
		if i, ok := byName[c.info.Name]; ok && c.retired {
			out[i].Retired = append(out[i].Retired, c.info.Snapshot)
		}
	}
	return out, nil
}

// Target returns the current chroot of target name, or an error wrapping
// ErrChrootMissing.
func (b *Buildroot) Target(ctx context.Context, name string) (TargetInfo, error) {
	all, err := b.Targets(ctx)
	if err != nil {
		return TargetInfo{}, err
	}
	for _, t := range all {
		if t.Name == name {
			return t, nil
		}
	}
	return TargetInfo{}, fmt.Errorf("target %q: %w in containerd namespace %s; make it with `worker chroot create %s`", name, ErrChrootMissing, b.cfg.Namespace, name)
}

type chroot struct {
	info    TargetInfo
	retired bool
}

// chroots lists the committed chroot snapshots, current and retired.
func (b *Buildroot) chroots(ctx context.Context) ([]chroot, error) {
	var out []chroot
	err := b.snapshotter().Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind != snapshots.KindCommitted || !strings.HasPrefix(info.Name, chrootPrefix) {
			return nil
		}
		created, _ := time.Parse(time.RFC3339Nano, info.Labels[labelCreated])
		out = append(out, chroot{
			info: TargetInfo{
				Name:     info.Labels[labelTarget],
				Digest:   info.Labels[labelDigest],
				Format:   info.Labels[labelFormat],
				Created:  created,
				Snapshot: info.Name,
			},
			retired: info.Labels[labelRetired] != "",
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list chroot snapshots: %w", err)
	}
	return out, nil
}
