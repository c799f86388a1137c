package serve

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestPushAndGCMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Pushed("mirror-1", nil)
	m.Pushed("mirror-1", errors.New("rsync: connection refused"))
	m.Pushed("mirror-1", nil)
	m.Collected(3, 4096)
	m.Collected(0, 0)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range families {
		for _, mt := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range mt.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			got[key] = mt.GetCounter().GetValue()
		}
	}
	for key, want := range map[string]float64{
		"kiln_publisher_mirror_pushes_total mirror=mirror-1 result=ok":     2,
		"kiln_publisher_mirror_pushes_total mirror=mirror-1 result=failed": 1,
		"kiln_publisher_gc_removed_objects_total":                          3,
		"kiln_publisher_gc_removed_bytes_total":                            4096,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
}
