package store

import (
	"context"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
)

// A request id is written with its job in one transaction, survives a
// reopen, keeps its first job when written again, and is forgotten after
// RequestRetention.
func TestRequestIDs(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, where string) {
		ctx := context.Background()
		s := open(t, where)
		now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
		j := &job.Job{ID: "1", Seq: 1, State: job.Queued, CreatedAt: now, Spec: job.Spec{Kind: job.Command, Command: []string{"true"}}}
		if err := s.PutRequest(ctx, j, Request{ID: "jenkins-7-build", JobID: "1", SpecHash: "h1", CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
		// A second write of the id (a lost race) keeps the first job.
		if err := s.PutRequest(ctx, nil, Request{ID: "jenkins-7-build", JobID: "2", SpecHash: "h2", CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, where)
		if r, err := s.RequestByID(ctx, "jenkins-7-build", now); err != nil || r == nil || r.JobID != "1" {
			t.Fatalf("request after a second write: %+v %v, want job 1", r, err)
		}
		// A retry after job 1 ended in error gives the id job 4; a
		// replacement of a job the id no longer names changes nothing.
		j4 := &job.Job{ID: "4", Seq: 4, State: job.Queued, CreatedAt: now, Spec: j.Spec}
		if err := s.PutRequest(ctx, j4, Request{ID: "jenkins-7-build", JobID: "4", SpecHash: "h1", CreatedAt: now, Replaces: "1"}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutRequest(ctx, nil, Request{ID: "jenkins-7-build", JobID: "5", SpecHash: "h1", CreatedAt: now, Replaces: "1"}); err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got, err := s.Get(ctx, "1"); err != nil || got.State != job.Queued {
			t.Fatalf("job of the request: %+v %v", got, err)
		}
		r, err := s.RequestByID(ctx, "jenkins-7-build", now.Add(time.Hour))
		if err != nil || r == nil || r.JobID != "4" || r.SpecHash != "h1" || !r.CreatedAt.Equal(now) {
			t.Fatalf("request: %+v %v, want job 4 with hash h1", r, err)
		}
		if r, err := s.RequestByID(ctx, "other", now); err != nil || r != nil {
			t.Fatalf("unknown id: %+v %v, want none", r, err)
		}
		late := now.Add(RequestRetention + time.Second)
		if r, err := s.RequestByID(ctx, "jenkins-7-build", late); err != nil || r != nil {
			t.Fatalf("expired id: %+v %v, want none", r, err)
		}
		if n, err := s.ForgetRequests(ctx, now.Add(RequestRetention-time.Second)); err != nil || n != 0 {
			t.Fatalf("forget before retention: %d %v, want 0", n, err)
		}
		if n, err := s.ForgetRequests(ctx, late); err != nil || n != 1 {
			t.Fatalf("forget after retention: %d %v, want 1", n, err)
		}
		// Forgotten, the id may name a new job.
		if err := s.PutRequest(ctx, nil, Request{ID: "jenkins-7-build", JobID: "3", SpecHash: "h3", CreatedAt: late}); err != nil {
			t.Fatal(err)
		}
		if r, err := s.RequestByID(ctx, "jenkins-7-build", late); err != nil || r == nil || r.JobID != "3" {
			t.Fatalf("reused id: %+v %v, want job 3", r, err)
		}
	})
}
