package serve

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the publisher's Prometheus metrics, served on http_listen at
// /metrics.
type Metrics struct {
	uploads         *prometheus.CounterVec
	uploadBytes     prometheus.Counter
	publishes       *prometheus.CounterVec
	publishDuration *prometheus.HistogramVec
	packages        *prometheus.GaugeVec
	lastPublish     *prometheus.GaugeVec
	pushes          *prometheus.CounterVec
	gcObjects       prometheus.Counter
	gcBytes         prometheus.Counter
}

// NewMetrics registers the publisher's metrics with reg (nil: not
// registered anywhere, as in tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_publisher_uploads_total",
			Help: "Artifact uploads by result: stored, existed (already stored) or refused."}, []string{"result"}),
		uploadBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_publisher_upload_bytes_total",
			Help: "Bytes of artifacts stored by uploads."}),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_publisher_publish_requests_total",
			Help: "Publish requests by repository and result: published, replayed (a request already done) or failed."}, []string{"repository", "result"}),
		publishDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kiln_publisher_publish_duration_seconds",
			Help: "Time to include a request's packages and publish the repository signed.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 12)}, []string{"repository"}),
		packages: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kiln_publisher_repository_packages",
			Help: "Packages in a repository at its last publish."}, []string{"repository"}),
		lastPublish: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kiln_publisher_last_publish_timestamp_seconds",
			Help: "Unix time of a repository's last successful publish."}, []string{"repository"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_publisher_mirror_pushes_total",
			Help: "Pushes of a published repository to a mirror, by mirror and result: ok or failed."}, []string{"mirror", "result"}),
		gcObjects: prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_publisher_gc_removed_objects_total",
			Help: "Stored files removed because no package or snapshot references them."}),
		gcBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_publisher_gc_removed_bytes_total",
			Help: "Bytes of the stored files removed by gc."}),
	}
	if reg != nil {
		reg.MustRegister(m.uploads, m.uploadBytes, m.publishes, m.publishDuration, m.packages, m.lastPublish, m.pushes, m.gcObjects, m.gcBytes)
	}
	return m
}

func (m *Metrics) upload(result string, bytes int64) {
	m.uploads.WithLabelValues(result).Inc()
	m.uploadBytes.Add(float64(bytes))
}

func (m *Metrics) published(repo string, packages int, took time.Duration, now time.Time) {
	m.publishes.WithLabelValues(repo, "published").Inc()
	m.publishDuration.WithLabelValues(repo).Observe(took.Seconds())
	m.packages.WithLabelValues(repo).Set(float64(packages))
	m.lastPublish.WithLabelValues(repo).Set(float64(now.Unix()))
}

// Pushed counts one push to a mirror.
func (m *Metrics) Pushed(mirror string, err error) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	m.pushes.WithLabelValues(mirror, result).Inc()
}

// Collected counts what one gc run removed.
func (m *Metrics) Collected(objects int, bytes int64) {
	m.gcObjects.Add(float64(objects))
	m.gcBytes.Add(float64(bytes))
}
