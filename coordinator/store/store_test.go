package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPutGetSurvivesReopen(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, where string) {
		ctx := context.Background()
		path := where
		s := open(t, path)
		now := time.Now().UTC().Truncate(time.Microsecond)
		b := &job.Build{Release: "mos-9.0", Target: "bookworm", Package: "hello",
			Sources: []job.Source{{URL: "git://x/hello", Commit: "0123456789012345678901234567890123456789", Role: "combined"}}}
		j := &job.Job{ID: "1", Seq: 1, State: job.Queued, CreatedAt: now, BuildKey: b.Key(),
			Spec: job.Spec{Kind: job.PackageBuild, Build: b, Labels: map[string]string{"target": "bookworm"}}}
		if err := s.Put(ctx, j); err != nil {
			t.Fatal(err)
		}
		j.State, j.Attempt, j.Artifacts = job.Succeeded, 1, []job.Artifact{{Name: "out/a.deb", SHA256: "ab", Size: 3}}
		j.Record = &job.Record{ChrootDigest: "sha256:x", Installed: []job.Package{{Name: "gcc", Version: "12"}}}
		if err := s.Put(ctx, j); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, path)
		defer s.Close()
		got, err := s.Get(ctx, "1")
		if err != nil {
			t.Fatal(err)
		}
		if got.State != job.Succeeded || got.Spec.Build.Package != "hello" || got.Record.Installed[0].Name != "gcc" ||
			len(got.Artifacts) != 1 || !got.CreatedAt.Equal(now) {
			t.Fatalf("got %+v", got)
		}
		if k, err := s.ByBuildKey(ctx, b.Key()); err != nil || k == nil || k.ID != "1" {
			t.Fatalf("by key %v %v", k, err)
		}
		if _, err := s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing job: %v", err)
		}
	})
}

func TestConcurrentPutsAndRevisions(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, where string) {
		ctx := context.Background()
		s := open(t, where)
		defer s.Close()
		var wg sync.WaitGroup
		for i := 1; i <= 200; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				j := &job.Job{ID: fmt.Sprint(i), Seq: int64(i), State: job.Queued, CreatedAt: time.Now(),
					Spec: job.Spec{Kind: job.Command, Command: []string{"true"}}}
				if err := s.Put(ctx, j); err != nil {
					t.Error(err)
				}
			}(i)
		}
		wg.Wait()
		live, err := s.Live(ctx)
		if err != nil || len(live) != 200 || live[0].ID != "1" {
			t.Fatalf("live %d %v", len(live), err)
		}
		if n, _ := s.LastSeq(ctx); n != 200 {
			t.Fatalf("last seq %d", n)
		}
		for want := int64(1); want <= 3; want++ {
			n, err := s.NextRevision(ctx, "mos-9.0", "hello")
			if err != nil || n != want {
				t.Fatalf("revision %d %v, want %d", n, err, want)
			}
		}
		if n, _ := s.NextRevision(ctx, "mos-10.0", "hello"); n != 1 {
			t.Fatalf("other release revision %d", n)
		}
	})
}

// A write carrying an older version than the stored one does not bring an
// older state back (an assignment landing after a cancel).
func TestOlderVersionDoesNotOverwrite(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, where string) {
		ctx := context.Background()
		s := open(t, where)
		defer s.Close()
		j := &job.Job{ID: "1", Seq: 1, State: job.Queued, CreatedAt: time.Now(), Spec: job.Spec{Kind: job.Command, Command: []string{"true"}}}
		if err := s.Put(ctx, j); err != nil {
			t.Fatal(err)
		}
		running, canceled := *j, *j
		running.State, running.Version = job.Running, 10
		canceled.State, canceled.Version, canceled.Reason = job.Canceled, 11, "cancelled by user"
		if err := s.Put(ctx, &canceled); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, &running); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, "1")
		if err != nil || got.State != job.Canceled || got.Version != 11 {
			t.Fatalf("got %v version %d: %v", got.State, got.Version, err)
		}
		// The same version again (a publish state on a final job) applies.
		canceled.Publish = "published"
		if err := s.Put(ctx, &canceled); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Get(ctx, "1"); got.Publish != "published" {
			t.Fatalf("same-version write lost: %+v", got)
		}
	})
}
