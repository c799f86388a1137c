package fleet

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/coordinator/store"
)

// fixedClock reads one time; its timers are real.
type fixedClock struct {
	scheduler.RealClock
	t time.Time
}

func (c fixedClock) Now() time.Time { return c.t }

func openFleet(t *testing.T, dir string) (*Fleet, *store.Store) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, storeIn(dir))
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(ctx, Config{StateDir: dir, LostAfter: time.Minute, Clock: fixedClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}},
		st, hclog.NewNullLogger())
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	return f, st
}

func readLog(t *testing.T, f *Fleet, id string, offset int64) string {
	t.Helper()
	var b strings.Builder
	if _, err := f.StreamLog(context.Background(), id, offset, false, func(p []byte) error { b.Write(p); return nil }); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// A job's log is the worker's output with the coordinator's notes where
// they were added; every offset reads the same bytes, and the log survives
// a restart.
func TestLogNotesPlacedInOutput(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, dir string) {
		ctx := context.Background()
		f, st := openFleet(t, dir)
		j, _, err := f.Submit(ctx, job.Spec{Kind: job.Command, Command: []string{"make"}, Labels: map[string]string{"os": "linux"}})
		if err != nil {
			t.Fatal(err)
		}
		sess, _, err := f.Register(ctx, "w1", map[string]string{"os": "linux"}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		a, err := f.Pull(ctx, sess, 0)
		if err != nil || a == nil || a.ID != j.ID {
			t.Fatalf("pull: %v %v", a, err)
		}
		if _, err := os.Stat(f.logPath(j.ID)); !os.IsNotExist(err) {
			t.Fatalf("an assignment made a log file before any output: %v", err)
		}
		for _, chunk := range []string{"compiling\n", "linking\n"} {
			if err := f.AppendLog(sess, j.ID, a.Attempt, []byte(chunk)); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Complete(ctx, sess, j.ID, a.Attempt, scheduler.Outcome{}); err != nil {
			t.Fatal(err)
		}
		want := "[kiln 2026-11-25T10:00:00Z] attempt 1 on worker w1\n" +
			"compiling\nlinking\n" +
			"[kiln 2026-11-25T10:00:00Z] finished: succeeded\n"
		if got := readLog(t, f, j.ID, 0); got != want {
			t.Fatalf("log:\n%q\nwant\n%q", got, want)
		}
		for off := range int64(len(want) + 1) {
			if got := readLog(t, f, j.ID, off); got != want[off:] {
				t.Fatalf("log from offset %d: %q, want %q", off, got, want[off:])
			}
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		f, st = openFleet(t, dir)
		defer st.Close()
		if got := readLog(t, f, j.ID, 0); got != want {
			t.Fatalf("log after restart:\n%q\nwant\n%q", got, want)
		}
	})
}

// A job that prints nothing needs no log file; its log is its notes.
func TestLogWithoutOutput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, st := openFleet(t, t.TempDir())
	defer st.Close()
	j, _, err := f.Submit(ctx, job.Spec{Kind: job.Command, Command: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Cancel(ctx, j.ID, "not needed"); err != nil {
		t.Fatal(err)
	}
	if got, want := readLog(t, f, j.ID, 0), "[kiln 2026-11-25T10:00:00Z] not needed\n"; got != want {
		t.Fatalf("log %q, want %q", got, want)
	}
	if _, err := os.Stat(f.logPath(j.ID)); !os.IsNotExist(err) {
		t.Fatalf("log file made for a job without output: %v", err)
	}
}

// Logs written before notes moved to the store keep their inline lines.
func TestLogFromBeforeNotes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, st := openFleet(t, t.TempDir())
	defer st.Close()
	j := &job.Job{ID: "7", Seq: 7, State: job.Succeeded, Spec: job.Spec{Kind: job.Command, Command: []string{"true"}}}
	if err := st.Put(ctx, j); err != nil {
		t.Fatal(err)
	}
	old := "[kiln 2026-01-01T00:00:00Z] attempt 1 on worker w1\nok\n[kiln 2026-01-01T00:00:01Z] finished: succeeded\n"
	if err := os.WriteFile(f.logPath("7"), []byte(old), 0o640); err != nil {
		t.Fatal(err)
	}
	if got := readLog(t, f, "7", 3); got != old[3:] {
		t.Fatalf("log %q, want %q", got, old[3:])
	}
}

// An operator's drain survives a coordinator restart: the worker gets no
// job when it registers again, and the job says why it waits.
func TestDrainSurvivesRestart(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, dir string) {
		ctx := context.Background()
		f, st := openFleet(t, dir)
		if _, _, err := f.Register(ctx, "w1", map[string]string{"os": "linux"}, 1, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Drain(ctx, "w1", true); err != nil {
			t.Fatal(err)
		}
		st.Close()
		f, st = openFleet(t, dir)
		defer st.Close()
		j, _, err := f.Submit(ctx, job.Spec{Kind: job.Command, Command: []string{"true"}, Labels: map[string]string{"os": "linux"}})
		if err != nil {
			t.Fatal(err)
		}
		sess, _, err := f.Register(ctx, "w1", map[string]string{"os": "linux"}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := f.Pull(ctx, sess, 0); err != nil || got != nil {
			t.Fatalf("drained worker got %v %v", got, err)
		}
		if _, w, _ := f.Get(ctx, j.ID); !strings.Contains(w, "draining: w1") {
			t.Fatalf("waiting reason %q", w)
		}
		if _, err := f.Drain(ctx, "w1", false); err != nil {
			t.Fatal(err)
		}
		if got, err := f.Pull(ctx, sess, 0); err != nil || got == nil || got.ID != j.ID {
			t.Fatalf("undrained worker got %v %v", got, err)
		}
	})
}

// runMake submits a command job and has worker w1 take it: the job and
// the worker's session.
func runMake(t *testing.T, f *Fleet) (*job.Job, string) {
	t.Helper()
	ctx := context.Background()
	j, _, err := f.Submit(ctx, job.Spec{Kind: job.Command, Command: []string{"make"}, Labels: map[string]string{"os": "linux"}})
	if err != nil {
		t.Fatal(err)
	}
	sess, _, err := f.Register(ctx, "w1", map[string]string{"os": "linux"}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := f.Pull(ctx, sess, 0); err != nil || a == nil || a.ID != j.ID {
		t.Fatalf("pull: %v %v", a, err)
	}
	return j, sess
}

// Degenerate artifact names are refused at upload, each with a message
// naming it (quoted, so no control character reaches a terminal) and,
// where there is one, the name to use; so are a file and a directory of
// the same name in one job's results.
func TestDegenerateArtifactNamesAreRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, st := openFleet(t, t.TempDir())
	defer st.Close()
	j, sess := runMake(t, f)
	const body = "x"
	const sum = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
	put := func(name string) error {
		return f.PutArtifact(sess, j.ID, 1, job.Artifact{Name: name, SHA256: sum, Size: 1}, strings.NewReader(body))
	}
	for name, want := range map[string]string{
		".":                `artifact name ".": not a file path`,
		"out/./b":          `artifact name "out/./b": not in its plain form: use "out/b"`,
		"out//b":           `artifact name "out//b": not in its plain form: use "out/b"`,
		"out/b/":           `artifact name "out/b/": not in its plain form: use "out/b"`,
		"out/\x1b]0;x\x07": `artifact name "out/\x1b]0;x\a": control character`,
		"bad\xffutf8":      `artifact name "bad\xffutf8": not valid UTF-8`,
	} {
		err := put(name)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", name, err, want)
		}
	}
	for _, name := range []string{"out", "out/b"} {
		if err := put(name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	arts := []job.Artifact{{Name: "out", SHA256: sum, Size: 1}, {Name: "out/b", SHA256: sum, Size: 1}}
	err := f.Complete(ctx, sess, j.ID, 1, scheduler.Outcome{Artifacts: arts})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `artifact "out/b" is inside artifact "out"`) {
		t.Fatalf("file beside a directory of the same name: %v", err)
	}
}

// An upload of content the coordinator holds need not be sent; a held
// copy whose bytes no longer have its sha256 does not count, and the
// upload replaces it.
func TestHasArtifactChecksTheHeldBytes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f, st := openFleet(t, dir)
	defer st.Close()
	j, sess := runMake(t, f)
	const body = "x"
	a := job.Artifact{Name: "base/x.deb", SHA256: "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881", Size: 1}
	has := func() bool {
		t.Helper()
		ok, err := f.HasArtifact(sess, j.ID, 1, a)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if has() {
		t.Fatal("held before any upload")
	}
	if err := f.PutArtifact(sess, j.ID, 1, a, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if !has() {
		t.Fatal("not held after its upload")
	}
	if err := os.WriteFile(f.ArtifactPath(a), []byte("y"), 0o600); err != nil {
		t.Fatal(err)
	}
	if has() {
		t.Fatal("a damaged copy counts as held")
	}
	if err := f.PutArtifact(sess, j.ID, 1, a, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(f.ArtifactPath(a)); err != nil || string(data) != body || !has() {
		t.Fatalf("after the upload again: %q %v", data, err)
	}
	// The header is checked as for an upload.
	if _, err := f.HasArtifact(sess, j.ID, 1, job.Artifact{Name: "../x", SHA256: a.SHA256, Size: 1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad name: %v", err)
	}
	if _, err := f.HasArtifact(sess, j.ID, 2, a); err == nil {
		t.Error("an attempt that is not running is answered")
	}
}

// A log over MaxLogSize keeps its head and its tail, with a line where
// it was cut saying how much is missing; followers read the same bytes.
func TestLogOverTheCapKeepsHeadAndTail(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, storeIn(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f, err := New(ctx, Config{StateDir: dir, LostAfter: time.Minute, MaxLogSize: 1000,
		Clock: fixedClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}}, st, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	j, sess := runMake(t, f)
	var all strings.Builder
	for c := 'a'; c <= 'j'; c++ {
		chunk := strings.Repeat(string(c), 299) + "\n"
		all.WriteString(chunk)
		if err := f.AppendLog(sess, j.ID, 1, []byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Complete(ctx, sess, j.ID, 1, scheduler.Outcome{}); err != nil {
		t.Fatal(err)
	}
	out := all.String()
	want := "[kiln 2026-11-25T10:00:00Z] attempt 1 on worker w1\n" + out[:500] +
		"\n[kiln 2026-11-25T10:00:00Z] 2000 bytes of output cut here: the log is over the coordinator's max_log_size (1000 bytes); its first and last 500 bytes are kept\n" +
		out[len(out)-500:] + "[kiln 2026-11-25T10:00:00Z] finished: succeeded\n"
	if got := readLog(t, f, j.ID, 0); got != want {
		t.Fatalf("log:\n%q\nwant:\n%q", got, want)
	}
	for _, off := range []int64{0, 100, 600, int64(len(want)) - 10} {
		if got := readLog(t, f, j.ID, off); got != want[off:] {
			t.Fatalf("from offset %d: %q, want %q", off, got, want[off:])
		}
	}
	if _, err := os.Stat(f.logPath(j.ID) + ".tail"); !os.IsNotExist(err) {
		t.Fatalf("tail file left: %v", err)
	}
}
