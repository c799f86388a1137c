package daemon

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/publisher/push"
	"github.com/kiln-build/kiln/publisher/serve"
)

// rsyncLog is a fake rsync that records the source of each call.
type rsyncLog struct {
	mu    sync.Mutex
	srcs  []string
	block chan struct{} // when set, the first call waits for it
	first chan struct{} // closed at the first call
	once  sync.Once
	// called receives after every call.
	called chan struct{}
}

func (r *rsyncLog) run(_ context.Context, args []string, _ io.Writer) error {
	r.once.Do(func() {
		close(r.first)
		if r.block != nil {
			<-r.block
		}
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.srcs = append(r.srcs, filepath.Base(strings.TrimRight(args[len(args)-2], "/")))
	if r.called != nil {
		r.called <- struct{}{}
	}
	return nil
}

func (r *rsyncLog) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.srcs...)
}

func repoDirs(t *testing.T, names ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range names {
		d := filepath.Join(t.TempDir(), n)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		out[n] = d
	}
	return out
}

// Repositories are pushed one at a time in the order they were published;
// one published again before its push started is pushed once.
func TestPusherPushesInOrderOnce(t *testing.T) {
	t.Parallel()
	dirs := repoDirs(t, "a", "b")
	r := &rsyncLog{first: make(chan struct{}), called: make(chan struct{}, 100)}
	p := newPusher([]push.Mirror{{Name: "m1", Dest: t.TempDir()}}, r.run, serve.NewMetrics(nil), hclog.NewNullLogger())
	p.enqueue(dirs["a"])
	p.enqueue(dirs["b"])
	p.enqueue(dirs["a"])
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx); close(done) }()
	// Each push is two rsync calls here (files, then removals; there
	// are no indexes): a's two, then b's two.
	for range 4 {
		<-r.called
	}
	cancel()
	<-done
	if got := strings.Join(r.calls(), ","); got != "a,a,b,b" {
		t.Fatalf("rsync sources %s, want a,a,b,b", got)
	}
}

// At shutdown the push under way finishes before run returns; a push not
// yet started is left for later.
func TestPusherAwaitsThePushUnderWay(t *testing.T) {
	t.Parallel()
	dirs := repoDirs(t, "a", "b")
	r := &rsyncLog{first: make(chan struct{}), block: make(chan struct{})}
	p := newPusher([]push.Mirror{{Name: "m1", Dest: t.TempDir()}}, r.run, serve.NewMetrics(nil), hclog.NewNullLogger())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx); close(done) }()
	p.enqueue(dirs["a"])
	<-r.first // a's push is under way, blocked in rsync
	p.enqueue(dirs["b"])
	cancel()
	close(r.block)
	<-done
	if got := strings.Join(r.calls(), ","); got != "a,a" {
		t.Fatalf("rsync sources when run returned: %s, want a's whole push (a,a) and not b", got)
	}
}
