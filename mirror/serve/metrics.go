package serve

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kiln-build/kiln/internal/opshttp"
)

// Instrumented wraps h with request metrics and returns it with the
// handler that serves them (and /healthz): requests by method and status
// code, requests in flight, and response sizes.
func Instrumented(h http.Handler) (files, admin http.Handler) {
	reg := opshttp.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_mirror_requests_total",
		Help: "HTTP requests by method and status code."}, []string{"method", "code"})
	inFlight := prometheus.NewGauge(prometheus.GaugeOpts{Name: "kiln_mirror_requests_in_flight",
		Help: "HTTP requests being served."})
	// A vector without labels: the response-size middleware takes one.
	sizes := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kiln_mirror_response_bytes",
		Help: "Response sizes.", Buckets: prometheus.ExponentialBuckets(512, 4, 10)}, []string{})
	reg.MustRegister(requests, inFlight, sizes)
	files = promhttp.InstrumentHandlerInFlight(inFlight,
		promhttp.InstrumentHandlerCounter(requests,
			promhttp.InstrumentHandlerResponseSize(sizes, h)))
	return files, opshttp.Mux(reg)
}
