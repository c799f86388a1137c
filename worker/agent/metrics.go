package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a worker's Prometheus metrics (worker run serves them on
// metrics_listen at /metrics).
type Metrics struct {
	jobs          *prometheus.CounterVec
	running       prometheus.Gauge
	duration      *prometheus.HistogramVec
	logBytes      prometheus.Counter
	artifactBytes prometheus.Counter
	// artifactSkipped are bytes of artifacts the coordinator held already.
	artifactSkipped prometheus.Counter
}

// NewMetrics registers a worker's metrics with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_worker_jobs_total",
			Help: "Jobs this worker ran, by kind (command or build) and result: succeeded, failed, infrastructure (could not finish), handed_back (at shutdown) or refused (the coordinator had given the attempt up)."}, []string{"kind", "result"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kiln_worker_running_jobs",
			Help: "Jobs running now."}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kiln_worker_job_duration_seconds",
			Help: "Time from a job's start to its result, by kind.", Buckets: prometheus.ExponentialBuckets(1, 2, 14)}, []string{"kind"}),
		logBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_worker_log_bytes_total",
			Help: "Bytes of job output sent to the coordinator."}),
		artifactBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_worker_artifact_bytes_total",
			Help: "Bytes of artifacts uploaded."}),
		artifactSkipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_worker_artifact_bytes_not_sent_total",
			Help: "Bytes of artifacts not sent because the coordinator already held the same content (by sha256), such as base files every build uploads."}),
	}
	if reg != nil {
		reg.MustRegister(m.jobs, m.running, m.duration, m.logBytes, m.artifactBytes, m.artifactSkipped)
	}
	return m
}

func (m *Metrics) finished(kind, result string, took time.Duration) {
	m.jobs.WithLabelValues(kind, result).Inc()
	m.duration.WithLabelValues(kind).Observe(took.Seconds())
}
