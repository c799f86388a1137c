package store

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
)

// A release's seal is its newest change, with who and when, and survives a
// reopen; a release never sealed is unsealed.
func TestSealSurvivesReopen(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, where string) {
		ctx := context.Background()
		path := where
		s := open(t, path)
		if got, err := s.Sealed(ctx, "mos-9.0"); err != nil || got != (Seal{}) {
			t.Fatalf("never sealed: %+v %v", got, err)
		}
		t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
		if _, err := s.SetSealed(ctx, "mos-9.0", true, "alice", t0); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetSealed(ctx, "mos-9.0", false, "bob", t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetSealed(ctx, "mos-9.0", true, "carol", t0.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetSealed(ctx, "mos-10.0", false, "dave", t0); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, path)
		defer s.Close()
		want := Seal{Sealed: true, By: "carol", At: t0.Add(2 * time.Hour)}
		if got, err := s.Sealed(ctx, "mos-9.0"); err != nil || got != want {
			t.Fatalf("mos-9.0: %+v %v, want %+v", got, err, want)
		}
		if got, err := s.Sealed(ctx, "mos-10.0"); err != nil || got.Sealed || got.By != "dave" {
			t.Fatalf("mos-10.0: %+v %v", got, err)
		}
	})
}

// Verifications keep their items in order with their dependencies; the
// last final result per package and target is the newest verification's.
func TestVerifications(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, where string) {
		ctx := context.Background()
		s := open(t, where)
		defer s.Close()
		at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
		add := func(items ...VerifyItem) *Verification {
			t.Helper()
			v := &Verification{Release: "mos-9.0", RequestedBy: "alice", CreatedAt: at, Items: items}
			if err := s.AddVerification(ctx, v); err != nil {
				t.Fatal(err)
			}
			return v
		}
		v1 := add(VerifyItem{Package: "libfoo", Target: "bookworm", JobID: "1", Version: "1.0-1", Result: VerifyRunning, RebuildJobID: "10"},
			VerifyItem{Package: "app", Target: "bookworm", JobID: "2", Version: "2.0-1", Result: VerifyWaiting, After: []int{0}})
		got, err := s.Verification(ctx, v1.ID)
		if err != nil || got == nil || len(got.Items) != 2 || !reflect.DeepEqual(got.Items[1].After, []int{0}) || got.Items[1].Idx != 1 ||
			got.RequestedBy != "alice" || !got.CreatedAt.Equal(at) {
			t.Fatalf("verification %+v %v", got, err)
		}
		if id, err := s.VerificationOfRebuild(ctx, "10"); err != nil || id != v1.ID {
			t.Fatalf("verification of rebuild 10: %d %v", id, err)
		}
		if id, err := s.VerificationOfRebuild(ctx, ""); err != nil || id != 0 {
			t.Fatalf("verification of no rebuild: %d %v", id, err)
		}
		it := got.Items[0]
		it.Result, it.Differing, it.FinishedAt = VerifyDifferent, []string{"out/libfoo1.deb"}, at.Add(time.Minute)
		if err := s.UpdateVerifyItem(ctx, it); err != nil {
			t.Fatal(err)
		}
		last, err := s.LastVerifications(ctx, "mos-9.0")
		if err != nil || len(last) != 1 || last["libfoo/bookworm"].Result != VerifyDifferent ||
			!reflect.DeepEqual(last["libfoo/bookworm"].Differing, []string{"out/libfoo1.deb"}) {
			t.Fatalf("last after the first: %+v %v, want libfoo different and app not yet", last, err)
		}
		v2 := add(VerifyItem{Package: "libfoo", Target: "bookworm", JobID: "1", Version: "1.0-1", Result: VerifyIdentical})
		v3 := add(VerifyItem{Package: "libfoo", Target: "bookworm", JobID: "1", Version: "1.0-1", Result: VerifyRunning})
		if v2.ID <= v1.ID || v3.ID <= v2.ID {
			t.Fatalf("ids %d %d %d", v1.ID, v2.ID, v3.ID)
		}
		last, _ = s.LastVerifications(ctx, "mos-9.0")
		if last["libfoo/bookworm"].Result != VerifyIdentical || last["libfoo/bookworm"].VerificationID != v2.ID {
			t.Fatalf("last %+v, want verification %d's identical (the running one has no result)", last["libfoo/bookworm"], v2.ID)
		}
		if v, err := s.Verification(ctx, 999); err != nil || v != nil {
			t.Fatalf("no such verification: %+v %v", v, err)
		}
	})
}

// A release's builds are its succeeded package builds, not its verified
// rebuilds, failures, or other releases' builds.
func TestReleaseBuilds(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, where string) {
		ctx := context.Background()
		s := open(t, where)
		defer s.Close()
		put := func(id int64, release string, st job.State, verify bool) {
			t.Helper()
			b := &job.Build{Release: release, Target: "bookworm", Package: "hello",
				Sources: []job.Source{{URL: "git://x/hello", Commit: strings.Repeat("a", 40), Role: "combined"}}}
			j := &job.Job{ID: string(rune('0' + id)), Seq: id, State: st, CreatedAt: time.Now(), BuildKey: b.Key(), Verify: verify,
				Spec: job.Spec{Kind: job.PackageBuild, Build: b}}
			if err := s.Put(ctx, j); err != nil {
				t.Fatal(err)
			}
		}
		put(1, "mos-9.0", job.Succeeded, false)
		put(2, "mos-9.0", job.Failed, false)
		put(3, "mos-9.0", job.Succeeded, true)
		put(4, "mos-10.0", job.Succeeded, false)
		put(5, "mos-9.0", job.Succeeded, false)
		if err := s.Put(ctx, &job.Job{ID: "6", Seq: 6, State: job.Succeeded, CreatedAt: time.Now(), Spec: job.Spec{Kind: job.Command, Command: []string{"true"}}}); err != nil {
			t.Fatal(err)
		}
		got, err := s.ReleaseBuilds(ctx, "mos-9.0")
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, j := range got {
			ids = append(ids, j.ID)
		}
		if strings.Join(ids, ",") != "1,5" {
			t.Fatalf("builds of mos-9.0: %v, want 1,5", ids)
		}
	})
}
