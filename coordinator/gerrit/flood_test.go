package gerrit

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/gerrittest"
)

// TestFlood sends 10,000 events, nearly all noise, and checks that the
// intake keeps up (the real events among them are built promptly, nothing
// is left queued) with bounded memory.
func TestFlood(t *testing.T) {
	t.Parallel()
	h := newHarness(t, gerrittest.Options{}, nil)
	noise := []string{
		readEvent(t, "v3-ref-replicated.json"),
		readEvent(t, "v3-ref-updated-meta.json"),
		readEvent(t, "v3-unknown-type.json"),
		commentAdded(nginx, "9.0", 9, 1, psRev, "Patch Set 1: Code-Review+1", 1),
		refUpdated(nginx, "refs/changes/45/12345/3", parentRev, mergedRev),
		`{"type":"reviewer-added","change":{"project":"x","branch":"y","number":1},"reviewer":{"username":"z"}}`,
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	const total, real = 10000, 50
	start := time.Now()
	for i := 0; i < total; i++ {
		if i%(total/real) == 0 {
			change := 1000 + i
			h.srv.Send(patchsetCreated(nginx, "9.0", change, 1, fmt.Sprintf("%040x", change)))
			continue
		}
		h.srv.Send(noise[i%len(noise)])
	}
	sent := time.Since(start)
	h.builds.wait(t, real, 30*time.Second)
	h.sync()
	took := time.Since(start)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("sent %d events in %s, all handled after %s; heap %d -> %d KiB", total, sent, took, before.HeapAlloc>>10, after.HeapAlloc>>10)
	if got := len(h.builds.all()); got != real {
		t.Fatalf("%d builds, want %d", got, real)
	}
	if took > 20*time.Second {
		t.Fatalf("handling %d events took %s: the intake does not keep up", total, took)
	}
	const bound = 256 << 20
	if after.HeapAlloc > before.HeapAlloc+bound {
		t.Fatalf("heap grew from %d to %d bytes handling the flood", before.HeapAlloc, after.HeapAlloc)
	}
	if n := h.counter("kiln_gerrit_events_unknown_type_total"); n < 1 {
		t.Errorf("unknown types not counted: %v", n)
	}
}

// TestWebhookFloodFigures measures, for BENCHMARKS.md, how fast the
// webhook accepts a flood of events from concurrent clients (events/s,
// answer latency p50/p99) and how long deciding them all takes. It asserts
// nothing about speed; run with KILN_BENCH=1.
func TestWebhookFloodFigures(t *testing.T) {
	if os.Getenv("KILN_BENCH") == "" {
		t.Skip("a measurement; set KILN_BENCH=1 to run it")
	}
	h := newHarness(t, gerrittest.Options{}, nil)
	srv := httptest.NewServer(h.in.WebhookHandler())
	defer srv.Close()
	const total, clients, real = 20000, 16, 200
	bodies := make([]string, total)
	noise := []string{
		readEvent(t, "v3-ref-replicated.json"),
		readEvent(t, "v3-ref-updated-meta.json"),
		commentAdded(nginx, "9.0", 9, 1, psRev, "Patch Set 1: Code-Review+1", 1),
	}
	for i := range bodies {
		if i%(total/real) == 0 {
			bodies[i] = patchsetCreated(nginx, "9.0", 1000+i, 1, fmt.Sprintf("%040x", 1000+i))
		} else {
			bodies[i] = noise[i%len(noise)]
		}
	}
	lat := make([]time.Duration, total)
	next := make(chan int, total)
	for i := range total {
		next <- i
	}
	close(next)
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				resp, err := srv.Client().Post(srv.URL+"/gerrit/webhook/review?secret=s3cret", "application/json", strings.NewReader(bodies[i]))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					t.Errorf("status %d", resp.StatusCode)
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	accepted := time.Since(start)
	h.builds.wait(t, real, 5*time.Minute)
	for !h.decided() {
		time.Sleep(10 * time.Millisecond)
	}
	decided := time.Since(start)
	slices.Sort(lat)
	t.Logf("%d events (%d review builds) from %d clients: accepted in %s (%.0f events/s), answer p50 %s p99 %s max %s; all decided after %s",
		total, real, clients, accepted.Round(time.Millisecond), float64(total)/accepted.Seconds(),
		lat[total/2].Round(time.Microsecond), lat[total*99/100].Round(time.Microsecond), lat[total-1].Round(time.Microsecond), decided.Round(time.Millisecond))
}
