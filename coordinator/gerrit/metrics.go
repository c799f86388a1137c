package gerrit

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	events          *prometheus.CounterVec
	unknownTypes    *prometheus.CounterVec
	unknownFields   *prometheus.CounterVec
	malformed       *prometheus.CounterVec
	connects        *prometheus.CounterVec
	up              *prometheus.GaugeVec
	reconciles      *prometheus.CounterVec
	reconcileQueued *prometheus.CounterVec
	builds          *prometheus.CounterVec
	reviews         *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_gerrit_events_total",
			Help: "Gerrit events received, by server, type (\"other\" for types Kiln does not build from) and action.",
		}, []string{"server", "type", "action"}),
		unknownTypes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_gerrit_events_unknown_type_total",
			Help: "Gerrit events of a type Kiln does not know, ignored.",
		}, []string{"server"}),
		unknownFields: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_gerrit_event_unknown_fields_total",
			Help: "Top-level fields Kiln does not know in events it uses, ignored.",
		}, []string{"server"}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_gerrit_events_malformed_total",
			Help: "Gerrit event lines that could not be parsed or carried bad values, skipped.",
		}, []string{"server"}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_gerrit_stream_connects_total",
			Help: "Attempts to open gerrit stream-events, by result (ok, error).",
		}, []string{"server", "result"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kiln_gerrit_stream_up",
			Help: "1 while the server's event stream is connected.",
		}, []string{"server"}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_gerrit_reconcile_runs_total",
			Help: "Reconciliations of tracked branches, by result (ok, error).",
		}, []string{"server", "result"}),
		reconcileQueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_gerrit_reconcile_queued_total",
			Help: "Branch heads the reconciler found unbuilt and queued.",
		}, []string{"server"}),
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_gerrit_builds_submitted_total",
			Help: "Builds submitted from Gerrit, by kind (review, release).",
		}, []string{"server", "kind"}),
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_gerrit_reviews_total",
			Help: "Reviews posted to Gerrit, by result (ok, error).",
		}, []string{"server", "result"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.events, m.unknownTypes, m.unknownFields, m.malformed,
		m.connects, m.up, m.reconciles, m.reconcileQueued, m.builds, m.reviews} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register gerrit metrics: %w", err)
		}
	}
	return m, nil
}
