package serve

import (
	"context"
	"net/http"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-build/kiln/coordinator/api"
	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/store"
)

// Extra holds the optional subsystems' config sections.
type Extra struct{}

// Validate checks the optional sections.
func (e *Extra) Validate() error { return nil }

// HookDeps is what optional subsystems get to work with.
type HookDeps struct {
	Fleet     *fleet.Fleet
	Store     *store.Store
	Logger    hclog.Logger
	Registry  prometheus.Registerer
	PublicURL string
}

// Hooks is what optional subsystems add to the server.
type Hooks struct {
	Events  api.EventLister
	Runners []func(context.Context) error
	HTTP    map[string]http.Handler
}

// Start starts the configured optional subsystems.
func (e *Extra) Start(ctx context.Context, d HookDeps) (Hooks, error) {
	return Hooks{HTTP: map[string]http.Handler{}}, nil
}
