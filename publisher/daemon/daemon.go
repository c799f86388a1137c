// Package daemon is the publisher's composition root for `publisher serve`:
// it builds the gRPC service, the mirror pusher and the stored-file
// collector from the config, runs them under one errgroup, and stops them
// all before Run returns, so the caller may close the store then.
package daemon

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-build/kiln/publisher/push"
	"github.com/kiln-build/kiln/publisher/repo"
	"github.com/kiln-build/kiln/publisher/serve"
)

// Config is what the daemon runs.
type Config struct {
	// Serve is the gRPC service's config (listen addresses, TLS, limits,
	// the gc interval).
	Serve serve.Config
	// Mirrors receive every published repository by rsync.
	Mirrors []push.Mirror
	// Ready, when set, is told the gRPC address once it listens.
	Ready func(addr net.Addr)
	// Push runs rsync; nil means push.RunRsync.
	Push push.Runner
}

// Daemon is a running publisher.
type Daemon struct {
	cfg    Config
	store  *repo.Store
	svc    *serve.Service
	pusher *pusher
	log    hclog.Logger
}

// New builds the daemon on an open store and the signing key.
func New(cfg Config, store *repo.Store, signer repo.Signer, log hclog.Logger) *Daemon {
	if cfg.Push == nil {
		cfg.Push = push.RunRsync
	}
	d := &Daemon{cfg: cfg, store: store, log: log,
		svc: serve.NewService(store, signer, cfg.Serve.MaxUploadBytes, log.Named("serve"))}
	if len(cfg.Mirrors) > 0 {
		d.pusher = newPusher(cfg.Mirrors, cfg.Push, d.svc.Metrics, log.Named("push"))
		d.svc.Published = d.pusher.enqueue
	}
	return d
}

// Run serves until ctx ends or a component fails, then stops every
// component and waits for it: the push under way finishes, the collector
// stops, the server stops gracefully.
func (d *Daemon) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return serve.Run(gctx, d.cfg.Serve, d.svc, d.log.Named("serve"), d.cfg.Ready)
	})
	if d.pusher != nil {
		g.Go(func() error { d.pusher.run(gctx); return nil })
	}
	if every := d.cfg.Serve.GCInterval; every >= 0 {
		if every == 0 {
			every = serve.DefaultGCInterval
		}
		g.Go(func() error { collectEvery(gctx, d.store, every, d.svc.Metrics, d.log.Named("gc")); return nil })
	}
	return g.Wait()
}

// collectEvery removes unreferenced stored files every interval until ctx
// ends.
func collectEvery(ctx context.Context, st *repo.Store, every time.Duration, m *serve.Metrics, log hclog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			res, err := st.CollectObjects(ctx, repo.DefaultObjectGrace, false)
			if err != nil && ctx.Err() == nil {
				log.Error("removing unreferenced stored files failed; the next run retries", "error", err)
			}
			m.Collected(res.Removed, res.Bytes)
		}
	}
}

// pusher pushes published repositories to the mirrors, one at a time so
// that each mirror gets them in order. A repository published again
// before its push started is pushed once, in its latest state.
type pusher struct {
	mirrors []push.Mirror
	run1    push.Runner
	metrics *serve.Metrics
	log     hclog.Logger

	mu      sync.Mutex
	pending []string
	wake    chan struct{}
}

func newPusher(mirrors []push.Mirror, run push.Runner, m *serve.Metrics, log hclog.Logger) *pusher {
	return &pusher{mirrors: mirrors, run1: run, metrics: m, log: log, wake: make(chan struct{}, 1)}
}

// enqueue asks for dir to be pushed; it does not block.
func (p *pusher) enqueue(dir string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.pending {
		if d == dir {
			return
		}
	}
	p.pending = append(p.pending, dir)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *pusher) next() (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pending) == 0 {
		return "", false
	}
	dir := p.pending[0]
	p.pending = p.pending[1:]
	return dir, true
}

// run pushes what is enqueued until ctx ends. A push under way then
// finishes (a mirror is left with a whole state); what was not started is
// logged and left for the next publish or `publisher push`.
func (p *pusher) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
		case <-p.wake:
		}
		for ctx.Err() == nil {
			dir, ok := p.next()
			if !ok {
				break
			}
			p.pushAll(context.WithoutCancel(ctx), dir)
		}
		if ctx.Err() != nil {
			p.mu.Lock()
			left := p.pending
			p.pending = nil
			p.mu.Unlock()
			for _, dir := range left {
				p.log.Warn("shutting down: push not started; the next publish or `publisher push` sends it", "repository", filepath.Base(dir))
			}
			return
		}
	}
}

func (p *pusher) pushAll(ctx context.Context, dir string) {
	for _, m := range p.mirrors {
		var out bytes.Buffer
		err := push.Repository(ctx, p.run1, dir, m, &out)
		p.metrics.Pushed(m.Name, err)
		if err != nil {
			p.log.Error("push to mirror failed; the next publish or `publisher push` sends it", "mirror", m.Name, "repository", filepath.Base(dir), "error", err, "output", out.String())
			continue
		}
		p.log.Info("pushed", "mirror", m.Name, "repository", filepath.Base(dir))
	}
}
