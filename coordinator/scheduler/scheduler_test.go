package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler/clocktest"
)

type fixture struct {
	t     *testing.T
	clock *clocktest.Clock
	s     *Scheduler
	seq   int64
	ids   int
	waits []time.Duration
}

func newFixture(t *testing.T, retryCap int) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	f.s = New(Config{
		LostAfter: 10 * time.Second,
		RetryCap:  retryCap,
		NewID:     func() string { f.ids++; return fmt.Sprintf("s%d", f.ids) },
		Started:   func(d time.Duration) { f.waits = append(f.waits, d) },
	}, f.clock)
	return f
}

func (f *fixture) submit(labels map[string]string, prio int32, group, supersede string) *job.Job {
	f.seq++
	j := &job.Job{ID: fmt.Sprintf("j%d", f.seq), Seq: f.seq, CreatedAt: f.clock.Now(), Spec: job.Spec{
		Kind: job.Command, Command: []string{"true"}, Labels: labels, Priority: prio,
		FairnessGroup: group, SupersedeKey: supersede,
	}}
	f.s.Enqueue(j)
	return j
}

// waitForWaiter waits until one puller waits: its long poll's timer is
// the one pending on the clock (Pull starts it once it is a waiter).
func (f *fixture) waitForWaiter() {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.clock.WaitTimers(ctx, 1); err != nil {
		f.t.Fatalf("puller never waited: %v", err)
	}
}

func (f *fixture) pull(session string) string {
	f.t.Helper()
	j, err := f.s.Pull(context.Background(), session, 0)
	if err != nil {
		f.t.Fatalf("pull: %v", err)
	}
	if j == nil {
		return ""
	}
	return j.ID
}

func bookworm() map[string]string { return map[string]string{"target": "bookworm"} }

func TestPriorityBeforeAge(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	f.submit(bookworm(), 50, "r1", "")  // j1 review
	f.submit(bookworm(), 0, "r1", "")   // j2 plain
	f.submit(bookworm(), 100, "r1", "") // j3 merge
	sid, _, _ := f.s.Register("w1", map[string]string{"target": "bookworm", "arch": "amd64"}, 3, nil)
	got := []string{f.pull(sid), f.pull(sid), f.pull(sid)}
	want := []string{"j3", "j1", "j2"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("order %v, want %v", got, want)
	}
}

func TestFairnessBetweenReleases(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	for i := 0; i < 4; i++ {
		f.submit(bookworm(), 0, "mos-9.0", "") // j1..j4
	}
	f.submit(bookworm(), 0, "mos-10.0", "") // j5
	f.submit(bookworm(), 0, "mos-10.0", "") // j6
	sid, _, _ := f.s.Register("w1", bookworm(), 10, nil)
	var got []string
	for i := 0; i < 6; i++ {
		got = append(got, f.pull(sid))
	}
	// The groups alternate while both have work, oldest first within each.
	want := "j1,j5,j2,j6,j3,j4"
	if strings.Join(got, ",") != want {
		t.Fatalf("order %v, want %s", got, want)
	}
}

func TestLabelsMustMatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	j := f.submit(map[string]string{"target": "centos7"}, 0, "", "")
	sid, _, _ := f.s.Register("w1", bookworm(), 1, nil)
	if id := f.pull(sid); id != "" {
		t.Fatalf("worker without the label got %s", id)
	}
	if r := f.s.WaitingReason(j.ID); r != "no worker has label target=centos7" {
		t.Fatalf("reason %q", r)
	}
}

func TestWaitingReasons(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	busy := f.submit(bookworm(), 0, "", "")
	s1, _, _ := f.s.Register("w1", bookworm(), 1, nil)
	s2, _, _ := f.s.Register("w2", bookworm(), 1, nil)
	f.pull(s1)
	f.submit(bookworm(), 0, "", "")
	f.pull(s2)
	j := f.submit(bookworm(), 0, "", "")
	if r := f.s.WaitingReason(j.ID); r != "all 2 matching workers busy" {
		t.Fatalf("reason %q", r)
	}
	if _, err := f.s.Complete(s1, busy.ID, 1, Outcome{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Drain("w1", true); err != nil {
		t.Fatal(err)
	}
	if r := f.s.WaitingReason(j.ID); r != "all 1 matching workers busy; draining: w1" {
		t.Fatalf("reason %q", r)
	}
	if id := f.pull(s1); id != "" {
		t.Fatalf("drained worker got %s", id)
	}
	if _, err := f.s.Drain("w1", false); err != nil {
		t.Fatal(err)
	}
	if id := f.pull(s1); id != j.ID {
		t.Fatalf("undrained worker got %q, want %s", id, j.ID)
	}
}

func TestSupersede(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	running := f.submit(bookworm(), 50, "", "change-1/bookworm")
	sid, _, _ := f.s.Register("w1", bookworm(), 1, nil)
	if id := f.pull(sid); id != running.ID {
		t.Fatalf("pulled %q", id)
	}
	other := f.submit(bookworm(), 50, "", "change-2/bookworm")
	enqueue := func(id string) map[string]*job.Job {
		f.seq++
		j := &job.Job{ID: id, Seq: f.seq, Spec: job.Spec{Kind: job.Command, Labels: bookworm(), Priority: 50, SupersedeKey: "change-1/bookworm"}}
		out := map[string]*job.Job{}
		for _, c := range f.s.Enqueue(j) {
			out[c.ID] = c
		}
		return out
	}
	// Patch set 2 supersedes the running build of patch set 1.
	ch := enqueue("ps2")
	if len(ch) != 2 || ch[running.ID].State != job.Canceled || ch["ps2"].State != job.Queued ||
		ch[running.ID].Reason != "superseded by job ps2" {
		t.Fatalf("after ps2: %+v", ch)
	}
	// Patch set 3 supersedes the queued build of patch set 2.
	ch = enqueue("ps3")
	if len(ch) != 2 || ch["ps2"].State != job.Canceled || ch["ps3"].State != job.Queued {
		t.Fatalf("after ps3: %+v", ch)
	}
	cancel, _, _, err := f.s.Heartbeat(sid, []RunningJob{{running.ID, 1}}, false)
	if err != nil || len(cancel) != 1 || cancel[0].JobID != running.ID {
		t.Fatalf("heartbeat cancel %v %v", cancel, err)
	}
	if _, err := f.s.Complete(sid, running.ID, 1, Outcome{}); !errors.Is(err, ErrStale) {
		t.Fatalf("late result of superseded job: %v", err)
	}
	if id := f.pull(sid); id != other.ID {
		t.Fatalf("next %q, want %s (older, same priority)", id, other.ID)
	}
}

func TestHeartbeatExpiryRequeuesAndRefusesLateResult(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	j := f.submit(bookworm(), 0, "", "")
	s1, _, _ := f.s.Register("w1", bookworm(), 1, nil)
	s2, _, _ := f.s.Register("w2", bookworm(), 1, nil)
	if id := f.pull(s1); id != j.ID {
		t.Fatal("w1 did not get the job")
	}
	f.clock.Advance(8 * time.Second)
	if _, _, _, err := f.s.Heartbeat(s2, nil, false); err != nil {
		t.Fatal(err)
	}
	if ch := f.s.Expire(); len(ch) != 0 {
		t.Fatalf("expired too early: %v", ch)
	}
	f.clock.Advance(3 * time.Second)
	ch := f.s.Expire()
	if len(ch) != 1 || ch[0].State != job.Queued || !strings.Contains(ch[0].Reason, "worker w1 lost") {
		t.Fatalf("changed %+v", ch)
	}
	if id := f.pull(s2); id != j.ID {
		t.Fatalf("w2 got %q", id)
	}
	if _, err := f.s.Complete(s1, j.ID, 1, Outcome{}); !errors.Is(err, ErrUnknownSession) {
		t.Fatalf("late result from lost worker: %v", err)
	}
	done, err := f.s.Complete(s2, j.ID, 2, Outcome{})
	if err != nil || done.State != job.Succeeded {
		t.Fatalf("complete %v %v", done, err)
	}
	if _, err := f.s.Complete(s2, j.ID, 2, Outcome{}); !errors.Is(err, ErrStale) {
		t.Fatalf("second result accepted: %v", err)
	}
	ws := f.s.Workers()
	if ws[0].Name != "w1" || ws[0].State != WorkerLost {
		t.Fatalf("workers %+v", ws)
	}
}

func TestRetryCap(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2)
	j := f.submit(bookworm(), 0, "", "")
	sid, _, _ := f.s.Register("w1", bookworm(), 1, nil)
	f.pull(sid)
	c, err := f.s.Complete(sid, j.ID, 1, Outcome{InfraErr: true, Reason: "containerd unreachable"})
	if err != nil || c.State != job.Queued {
		t.Fatalf("first infra error: %+v %v", c, err)
	}
	f.pull(sid)
	c, err = f.s.Complete(sid, j.ID, 2, Outcome{InfraErr: true, Reason: "containerd unreachable"})
	if err != nil || c.State != job.Error || !strings.Contains(c.Reason, "gave up after 2 attempts") {
		t.Fatalf("second infra error: %+v %v", c, err)
	}
	if id := f.pull(sid); id != "" {
		t.Fatalf("job ran again: %s", id)
	}
}

func TestBuildFailureIsNotRetried(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	j := f.submit(bookworm(), 0, "", "")
	sid, _, _ := f.s.Register("w1", bookworm(), 1, nil)
	f.pull(sid)
	c, err := f.s.Complete(sid, j.ID, 1, Outcome{ExitCode: 2})
	if err != nil || c.State != job.Failed || c.Reason != "exit status 2" {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestLongPollHandOffAndQueueToStart(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	sid, _, _ := f.s.Register("w1", bookworm(), 1, nil)
	got := make(chan *job.Job, 1)
	go func() {
		j, _ := f.s.Pull(context.Background(), sid, time.Minute)
		got <- j
	}()
	f.waitForWaiter()
	j := f.submit(bookworm(), 0, "", "")
	select {
	case g := <-got:
		if g == nil || g.ID != j.ID || g.Attempt != 1 {
			t.Fatalf("got %+v", g)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiting puller not woken")
	}
	if len(f.waits) != 1 || f.waits[0] != 0 {
		t.Fatalf("queue-to-start %v", f.waits)
	}
}

func TestRestoreReattachesOrRequeues(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	now := f.clock.Now()
	mk := func(id string, seq int64, st job.State, w string) *job.Job {
		return &job.Job{ID: id, Seq: seq, State: st, Attempt: 1, Worker: w, CreatedAt: now,
			Spec: job.Spec{Kind: job.Command, Labels: bookworm()}}
	}
	if st := f.s.Stats(); st.Running != 0 {
		t.Fatal("not empty")
	}
	f.s.Restore([]*job.Job{mk("a", 1, job.Running, "w1"), mk("b", 2, job.Running, "w2"), mk("c", 3, job.Queued, "")})
	sid, abandon, _ := f.s.Register("w1", bookworm(), 2, []RunningJob{{"a", 1}, {"zombie", 4}})
	if len(abandon) != 1 || abandon[0].JobID != "zombie" {
		t.Fatalf("abandon %v", abandon)
	}
	if err := f.s.CheckAttempt(sid, "a", 1); err != nil {
		t.Fatalf("a not re-attached: %v", err)
	}
	if id := f.pull(sid); id != "c" {
		t.Fatalf("queued job after restore: %q", id)
	}
	f.clock.Advance(11 * time.Second)
	f.s.Heartbeat(sid, []RunningJob{{"a", 1}, {"c", 1}}, false)
	ch := f.s.Expire()
	if len(ch) != 1 || ch[0].ID != "b" || ch[0].State != job.Queued {
		t.Fatalf("expired %+v", ch)
	}
}

func TestCancelQueued(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	j := f.submit(bookworm(), 0, "", "")
	c, err := f.s.Cancel(j.ID, "not needed")
	if err != nil || c.State != job.Canceled {
		t.Fatalf("%+v %v", c, err)
	}
	sid, _, _ := f.s.Register("w1", bookworm(), 1, nil)
	if id := f.pull(sid); id != "" {
		t.Fatalf("cancelled job ran: %s", id)
	}
	if st := f.s.Stats(); st.QueueDepth["target=bookworm"] != 0 {
		t.Fatalf("depth %v", st.QueueDepth)
	}
	if _, err := f.s.Cancel(j.ID, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second cancel: %v", err)
	}
}

func TestWorkerLabelAlternatives(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	j := f.submit(map[string]string{"target": "centos7"}, 0, "", "")
	sid, _, _ := f.s.Register("w1", map[string]string{"target": "bookworm|centos7"}, 1, nil)
	if id := f.pull(sid); id != j.ID {
		t.Fatalf("worker offering centos7 among others got %q", id)
	}
	k := f.submit(map[string]string{"target": "centos"}, 0, "", "")
	if r := f.s.WaitingReason(k.ID); r != "no worker has label target=centos" {
		t.Fatalf("prefix matched: %q", r)
	}
}

// A long poll whose session is dropped (goodbye) while its puller is also
// gone ends quietly; the job it may have been handed goes back.
func TestPullEndsWhenSessionDropped(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	sid, _, _ := f.s.Register("w1", bookworm(), 1, nil)
	for i := 0; i < 50; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := f.s.Pull(ctx, sid, time.Minute)
			done <- err
		}()
		f.waitForWaiter()
		// Drop the waiter and cancel its puller at once.
		drained := make(chan struct{})
		go func() { f.s.Drain("w1", true); close(drained) }()
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("pull did not end")
		}
		<-drained
		f.s.Drain("w1", false)
	}
	// A job handed to a puller that is gone goes back to the queue.
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan *job.Job, 1)
	go func() {
		j, _ := f.s.Pull(ctx, sid, time.Minute)
		got <- j
	}()
	f.waitForWaiter()
	f.s.mu.Lock() // hold the scheduler so the hand-off and the cancel race
	cancel()
	f.s.mu.Unlock()
	j := f.submit(bookworm(), 0, "", "")
	if g := <-got; g != nil && g.ID == j.ID {
		// The puller took it before noticing its cancel: fine, it has it.
		return
	}
	if id := f.pull(sid); id != j.ID {
		t.Fatalf("job not given back: pulled %q", id)
	}
}

func TestCancelBySupersedeKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	centos7 := map[string]string{"target": "centos7"}
	running := f.submit(bookworm(), 50, "", "gerrit/review/7/bookworm")
	sid, _, _ := f.s.Register("w1", bookworm(), 1, nil)
	if id := f.pull(sid); id != running.ID {
		t.Fatalf("pulled %q", id)
	}
	queued := f.submit(centos7, 50, "", "gerrit/review/7/centos7")
	otherChange := f.submit(bookworm(), 50, "", "gerrit/review/8/bookworm")
	noKey := f.submit(bookworm(), 50, "", "")

	const reason = "change 7 abandoned"
	ch := f.s.CancelBySupersedeKey("gerrit/review/7/bookworm", reason)
	if len(ch) != 1 || ch[0].ID != running.ID || ch[0].State != job.Canceled || ch[0].Reason != reason || ch[0].Version == 0 {
		t.Fatalf("cancelled %+v, want the running job with the reason", ch)
	}
	ch = f.s.CancelBySupersedeKey("gerrit/review/7/centos7", reason)
	if len(ch) != 1 || ch[0].ID != queued.ID || ch[0].State != job.Canceled || ch[0].Reason != reason {
		t.Fatalf("cancelled %+v, want the queued job with the reason", ch)
	}
	if st := f.s.Stats(); st.QueueDepth["target=centos7"] != 0 || st.Running != 0 {
		t.Fatalf("stats after cancel %+v", st)
	}
	// The worker is told to stop, and its late result is refused.
	cancel, _, _, err := f.s.Heartbeat(sid, []RunningJob{{running.ID, 1}}, false)
	if err != nil || len(cancel) != 1 || cancel[0].JobID != running.ID {
		t.Fatalf("heartbeat cancel %v %v", cancel, err)
	}
	if _, err := f.s.Complete(sid, running.ID, 1, Outcome{}); !errors.Is(err, ErrStale) {
		t.Fatalf("late result of cancelled job: %v", err)
	}
	// Others are untouched: other changes' builds and builds without a key.
	for _, j := range []*job.Job{otherChange, noKey} {
		if l := f.s.Live(j.ID); l == nil || l.State != job.Queued {
			t.Fatalf("job %s after cancel: %+v, want still queued", j.ID, l)
		}
	}
	if ch := f.s.CancelBySupersedeKey("", reason); len(ch) != 0 {
		t.Fatalf("empty key cancelled %+v", ch)
	}
	if l := f.s.Live(noKey.ID); l == nil || l.State != job.Queued {
		t.Fatalf("job without a key after cancelling the empty key: %+v", l)
	}
	// Again: nothing left to cancel.
	if ch := f.s.CancelBySupersedeKey("gerrit/review/7/bookworm", reason); len(ch) != 0 {
		t.Fatalf("second cancel %+v", ch)
	}
	if id := f.pull(sid); id != otherChange.ID {
		t.Fatalf("next %q, want %s", id, otherChange.ID)
	}
	// A later build of the same key is queued normally, superseding nothing.
	f.seq++
	later := &job.Job{ID: "later", Seq: f.seq, Spec: job.Spec{Kind: job.Command, Labels: centos7, SupersedeKey: "gerrit/review/7/centos7"}}
	if ch := f.s.Enqueue(later); len(ch) != 1 || ch[0].ID != "later" || ch[0].State != job.Queued {
		t.Fatalf("enqueue after cancel changed %+v", ch)
	}
}

// TestCancelBySupersedeKeyAfterRestore: jobs restored after a coordinator
// restart, running ones whose worker has not come back included, are
// cancelled oldest first, and the worker is told to drop its attempt.
func TestCancelBySupersedeKeyAfterRestore(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	mk := func(id string, seq int64, st job.State, w string) *job.Job {
		return &job.Job{ID: id, Seq: seq, State: st, Attempt: 1, Worker: w, CreatedAt: f.clock.Now(),
			Spec: job.Spec{Kind: job.Command, Labels: bookworm(), SupersedeKey: "k"}}
	}
	f.s.Restore([]*job.Job{mk("b", 2, job.Queued, ""), mk("a", 1, job.Running, "w1"), mk("c", 3, job.Queued, "")})
	ch := f.s.CancelBySupersedeKey("k", "change 9 deleted")
	if len(ch) != 3 {
		t.Fatalf("cancelled %+v, want 3", ch)
	}
	for i, id := range []string{"a", "b", "c"} {
		if ch[i].ID != id || ch[i].State != job.Canceled || ch[i].Reason != "change 9 deleted" {
			t.Fatalf("cancelled[%d] = %+v, want %s cancelled", i, ch[i], id)
		}
	}
	sid, abandon, _ := f.s.Register("w1", bookworm(), 2, []RunningJob{{"a", 1}})
	if len(abandon) != 1 || abandon[0].JobID != "a" {
		t.Fatalf("abandon %v, want the cancelled attempt", abandon)
	}
	if id := f.pull(sid); id != "" {
		t.Fatalf("cancelled job ran: %s", id)
	}
	f.clock.Advance(time.Minute)
	if ch := f.s.Expire(); len(ch) != 0 {
		t.Fatalf("cancelled orphan re-queued: %+v", ch)
	}
}

// A worker that registers again while an abandoned attempt of a job is
// still ending beside the attempt it runs now reports both: the current
// attempt is re-attached, whatever the order, and only the old one is
// abandoned.
func TestRegisterKeepsAttemptsOfOneJobApart(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	j := f.submit(bookworm(), 0, "", "")
	s1, _, _ := f.s.Register("w1", bookworm(), 2, nil)
	if id := f.pull(s1); id != j.ID {
		t.Fatal("w1 did not get the job")
	}
	f.clock.Advance(11 * time.Second)
	if ch := f.s.Expire(); len(ch) != 1 {
		t.Fatalf("expired %+v", ch)
	}
	s2, _, _ := f.s.Register("w1", bookworm(), 2, []RunningJob{{j.ID, 1}})
	if id := f.pull(s2); id != j.ID {
		t.Fatal("w1 did not get attempt 2")
	}
	for _, running := range [][]RunningJob{{{j.ID, 2}, {j.ID, 1}}, {{j.ID, 1}, {j.ID, 2}}} {
		sid, abandon, changed := f.s.Register("w1", bookworm(), 2, running)
		if len(abandon) != 1 || abandon[0] != (RunningJob{j.ID, 1}) || len(changed) != 0 {
			t.Fatalf("reported %v: abandon %v, changed %+v; want attempt 1 abandoned and nothing re-queued", running, abandon, changed)
		}
		if err := f.s.CheckAttempt(sid, j.ID, 2); err != nil {
			t.Fatalf("reported %v: attempt 2 not re-attached: %v", running, err)
		}
	}
}

// A second process registering under a live worker's name is refused,
// saying where the first is connected from, and the first keeps its
// session; the same instance (a restart after a crash) takes over at
// once, and another instance once the old session is known dead.
func TestRegisterRefusesSecondProcessWithTheSameName(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	first, _, _, err := f.s.RegisterAs(Peer{Instance: "a", Addr: "10.0.0.1:4000"}, "w1", bookworm(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, err = f.s.RegisterAs(Peer{Instance: "b", Addr: "10.0.0.2:5000"}, "w1", bookworm(), 1, nil)
	if !errors.Is(err, ErrNameInUse) || !strings.Contains(err.Error(), "worker w1 is already connected from 10.0.0.1:4000") {
		t.Fatalf("second process: %v", err)
	}
	if _, _, _, err := f.s.Heartbeat(first, nil, false); err != nil {
		t.Fatalf("first process lost its session: %v", err)
	}
	again, _, _, err := f.s.RegisterAs(Peer{Instance: "a", Addr: "10.0.0.1:4001"}, "w1", bookworm(), 1, nil)
	if err != nil {
		t.Fatalf("same instance restarted: %v", err)
	}
	f.clock.Advance(5 * time.Second)
	if _, _, _, err := f.s.RegisterAs(Peer{Instance: "b"}, "w1", bookworm(), 1, nil); !errors.Is(err, ErrNameInUse) {
		t.Fatalf("second process while the first is alive: %v", err)
	}
	f.clock.Advance(6 * time.Second)
	taken, _, _, err := f.s.RegisterAs(Peer{Instance: "b"}, "w1", bookworm(), 1, nil)
	if err != nil || taken == again {
		t.Fatalf("taking over a dead session: %q %v", taken, err)
	}
}

// A worker that comes back after a coordinator restart without a job the
// coordinator had running on it (the assignment never reached it) has
// that job re-queued at once, not after the reclaim window.
func TestRegisterRequeuesOrphanTheWorkerDoesNotRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	now := f.clock.Now()
	f.s.Restore([]*job.Job{{ID: "a", Seq: 1, State: job.Running, Attempt: 1, Worker: "w1", CreatedAt: now,
		Spec: job.Spec{Kind: job.Command, Labels: bookworm()}}})
	_, _, changed := f.s.Register("w1", bookworm(), 1, nil)
	if len(changed) != 1 || changed[0].ID != "a" || changed[0].State != job.Queued {
		t.Fatalf("changed %+v, want job a re-queued", changed)
	}
}

// A long poll waits its wait on the scheduler's clock: a job submitted
// just before the wait is up is handed over, and when the clock passes
// the wait the poll ends empty.
func TestLongPollWaitsOnTheClock(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	sid, _, _ := f.s.Register("w1", bookworm(), 1, nil)
	got := make(chan *job.Job, 1)
	go func() {
		j, _ := f.s.Pull(context.Background(), sid, time.Minute)
		got <- j
	}()
	f.waitForWaiter()
	f.clock.Advance(time.Minute - time.Second)
	j := f.submit(bookworm(), 0, "", "")
	if g := <-got; g == nil || g.ID != j.ID {
		t.Fatalf("pull before the wait was up got %+v, want %s", g, j.ID)
	}
	if _, err := f.s.Complete(sid, j.ID, 1, Outcome{}); err != nil {
		t.Fatal(err)
	}
	go func() {
		j, _ := f.s.Pull(context.Background(), sid, time.Minute)
		got <- j
	}()
	f.waitForWaiter()
	f.clock.Advance(time.Minute)
	if g := <-got; g != nil {
		t.Fatalf("pull after its wait got %+v, want nothing", g)
	}
}
