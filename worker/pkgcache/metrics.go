package pkgcache

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the package cache's Prometheus metrics.
type Metrics struct {
	hits      prometheus.Counter
	misses    prometheus.Counter
	bytes     prometheus.Gauge
	evictions prometheus.Counter
	corrupt   prometheus.Counter
}

// NewMetrics registers the package cache's metrics with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		hits: prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_worker_package_cache_hits_total",
			Help: "Package files a build step got from the worker's package cache instead of its source."}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_worker_package_cache_misses_total",
			Help: "Package files a build step asked for that the package cache did not hold (or held corrupt), fetched from the source."}),
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kiln_worker_package_cache_bytes",
			Help: "Bytes of package files in the package cache."}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_worker_package_cache_evictions_total",
			Help: "Package files removed from the package cache to keep it within max_size, least recently used first."}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_worker_package_cache_corrupt_total",
			Help: "Package cache files whose bytes on disk no longer matched their sha256 when read; each was dropped and fetched again."}),
	}
	if reg != nil {
		reg.MustRegister(m.hits, m.misses, m.bytes, m.evictions, m.corrupt)
	}
	return m
}
