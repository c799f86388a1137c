package serve

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Instrumented wraps h with request metrics and returns it with the
// handler that serves them (and /healthz): requests by method and status
// code, requests in flight, and response sizes.
func Instrumented(h http.Handler) (files, admin http.Handler) {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_mirror_requests_total",
		Help: "HTTP requests by method and status code."}, []string{"method", "code"})
	inFlight := prometheus.NewGauge(prometheus.GaugeOpts{Name: "kiln_mirror_requests_in_flight",
		Help: "HTTP requests being served."})
	// A vector without labels: the response-size middleware takes one.
	sizes := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kiln_mirror_response_bytes",
		Help: "Response sizes.", Buckets: prometheus.ExponentialBuckets(512, 4, 10)}, []string{})
	reg.MustRegister(requests, inFlight, sizes, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	files = promhttp.InstrumentHandlerInFlight(inFlight,
		promhttp.InstrumentHandlerCounter(requests,
			promhttp.InstrumentHandlerResponseSize(sizes, h)))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	return files, mux
}
