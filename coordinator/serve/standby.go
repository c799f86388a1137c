package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/kiln-build/kiln/coordinator/store"
	"github.com/kiln-build/kiln/internal/grpcerr"
	"github.com/kiln-build/kiln/internal/opshttp"
)

// lead returns once this coordinator leads. On SQLite that is at once. On
// PostgreSQL, while another coordinator leads, this one is a standby: it
// answers every gRPC call UNAVAILABLE, reason STANDBY, with the leader's
// address (workers and clients given several addresses move on to it),
// and on the HTTP address serves /metrics (kiln_coordinator_leader 0) and
// /healthz (503, "standby"). Then it stops both, so that the leader's
// servers take the addresses.
func lead(ctx context.Context, cfg Config, st *store.Store, creds []grpc.ServerOption, reg prometheus.Gatherer, logger hclog.Logger) (*store.Lease, error) {
	advertise := cfg.AdvertiseAddress()
	if !st.Shared() {
		return st.Lead(ctx, advertise)
	}
	leader := func(ctx context.Context) string {
		_, addr, err := st.Leader(ctx)
		if err != nil {
			return ""
		}
		return addr
	}
	gs := grpc.NewServer(append(creds, grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		return grpcerr.StandbyStatus(leader(ss.Context())).Err()
	}))...)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	served := make(chan error, 2)
	go func() { served <- gs.Serve(ln) }()
	defer gs.Stop()
	if cfg.HTTPListen != "" {
		mux := opshttp.Mux(reg, func(ctx context.Context) error {
			if addr := leader(ctx); addr != "" {
				return errors.New("standby: the leader is " + addr)
			}
			return errors.New("standby: no coordinator leads yet")
		})
		hl, err := net.Listen("tcp", cfg.HTTPListen)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", cfg.HTTPListen, err)
		}
		if !cfg.Dev {
			htc, err := httpTLS(cfg.TLS)
			if err != nil {
				hl.Close()
				return nil, err
			}
			hl = tls.NewListener(hl, htc)
		}
		hsrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := hsrv.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
				served <- err
			}
		}()
		defer hsrv.Close()
	}
	logger.Info("standby: waiting to lead", "listen", ln.Addr().String(), "leader", leader(ctx))
	type result struct {
		lease *store.Lease
		err   error
	}
	led := make(chan result, 1)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		l, err := st.Lead(lctx, advertise)
		led <- result{l, err}
	}()
	select {
	case r := <-led:
		if r.err == nil {
			logger.Info("leading", "epoch", r.lease.Epoch, "advertise", advertise)
		}
		return r.lease, r.err
	case err := <-served:
		cancel()
		if r := <-led; r.err == nil {
			r.lease.Release()
		}
		return nil, fmt.Errorf("serve as a standby: %w", err)
	}
}
