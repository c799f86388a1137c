package gerrit

import (
	"context"
	"fmt"
	"time"

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
	accepted        *prometheus.CounterVec
	retries         *prometheus.CounterVec
	bodyBytes       prometheus.Gauge
	bodyWaits       prometheus.Counter
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
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_gerrit_events_accepted_total",
			Help: "Gerrit events stored to be decided, by how they came (stream, webhook).",
		}, []string{"server", "via"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_gerrit_decision_retries_total",
			Help: "Decisions on Gerrit events that failed and are tried again (a git server that did not answer, the build queue refusing).",
		}, []string{"server"}),
		bodyBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kiln_gerrit_webhook_body_bytes",
			Help: "Bytes of webhook bodies being read and stored, counted at their Content-Length or the body limit.",
		}),
		bodyWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kiln_gerrit_webhook_body_waits_total",
			Help: "Webhook requests that waited for the bodies of others to be stored (the memory budget was taken).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.events, m.unknownTypes, m.unknownFields, m.malformed,
		m.connects, m.up, m.reconciles, m.reconcileQueued, m.builds, m.reviews, m.accepted, m.retries, m.bodyBytes, m.bodyWaits} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register gerrit metrics: %w", err)
		}
	}
	return m, nil
}

// dueCollector gives kiln_gerrit_reports_due, read from the store when
// scraped: events whose builds have all finished and whose report Gerrit
// has not taken yet (posts in flight, waiting behind others, or refused
// and waiting to be retried).
type dueCollector struct {
	desc    *prometheus.Desc
	servers []string
	count   func(ctx context.Context) (map[string]int, error)
}

func registerDue(reg prometheus.Registerer, servers []string, count func(ctx context.Context) (map[string]int, error)) error {
	if reg == nil {
		return nil
	}
	c := dueCollector{
		desc: prometheus.NewDesc("kiln_gerrit_reports_due",
			"Events whose builds have all finished and whose report Gerrit has not taken yet.", []string{"server"}, nil),
		servers: servers,
		count:   count,
	}
	if err := reg.Register(c); err != nil {
		return fmt.Errorf("register gerrit metrics: %w", err)
	}
	return nil
}

func (c dueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c dueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := c.count(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, s := range c.servers {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n[s]), s)
	}
}
