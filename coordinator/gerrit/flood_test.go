package gerrit

import (
	"fmt"
	"runtime"
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
