package buildroot

import "github.com/prometheus/client_golang/prometheus"

// layerMetrics are the build-dependency layer cache's Prometheus metrics.
type layerMetrics struct {
	hits, misses, unusable, stored, evictions prometheus.Counter
}

// newLayerMetrics registers the layer cache's metrics with reg (nil: not
// registered).
func newLayerMetrics(reg prometheus.Registerer) *layerMetrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_worker_layer_cache_" + name + "_total", Help: help})
	}
	m := &layerMetrics{
		hits:      counter("hits", "Phase 1 runs that unpacked a stored build-dependency layer instead of installing."),
		misses:    counter("misses", "Phase 1 runs whose resolved build dependencies had no stored layer on their chroot."),
		unusable:  counter("unusable", "Stored layers not used: corrupt (removed), or a package file they were made from no longer in the package cache."),
		stored:    counter("stored", "Build-dependency layers stored after a phase 1 that installed."),
		evictions: counter("evictions", "Layers removed to keep the layer cache within max_size, least recently used first."),
	}
	if reg != nil {
		reg.MustRegister(m.hits, m.misses, m.unusable, m.stored, m.evictions)
	}
	return m
}
