package serve

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
)

// A Gerrit event whose build the coordinator cannot make (its target is
// not one of the release's) is refused with the same check as a client's
// build: the event log says why, naming the configured targets, and
// nothing is queued.
func TestGerritBuildOfUnknownTargetIsRefused(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g := startGerritFleetWith(ctx, t, job.Releases{"mos-9.0": {"centos7-x86_64": "rpm"}}, nil)
	g.srv.Send(gerritEvent(t, "v3-patchset-created.json", "1234"))
	eventually(ctx, t, func() (bool, string) {
		evs, err := g.hooks.Events.ListEvents(ctx, 5, true)
		if err != nil || len(evs) == 0 {
			return false, fmt.Sprintf("no event recorded (%v)", err)
		}
		e := evs[0]
		return e.Action == "refused" && strings.Contains(e.Reason, `target "trusty-amd64"`) && strings.Contains(e.Reason, "centos7-x86_64"),
			fmt.Sprintf("event %+v, want refused naming the target and the configured ones", e)
	})
	jobs, err := g.f.List(ctx, nil, 10)
	if err != nil || len(jobs) != 0 {
		t.Fatalf("jobs %v (%v), want none queued", jobs, err)
	}
}
