package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	wpb "github.com/kiln-build/kiln/proto/kiln/worker/v1"
)

// logWriter batches a job's output and sends it to the coordinator every
// flushEvery or when maxBatch bytes are waiting, so a log is live without a
// call per line. Output waits in a spool file, not in memory, so that a
// coordinator that cannot be reached for a while costs disk up to
// Config.LogSpoolMax and no more: output over that is dropped, and the
// log says there how much.
type logWriter struct {
	a       *Agent
	id      string
	attempt int
	max     int64

	mu      sync.Mutex
	spool   spool
	path    string // of the spool file, "" when in memory
	size    int64  // bytes in the spool
	sent    int64  // bytes of the spool sent
	dropped int64  // bytes dropped since the last note of it
	lost    int64  // bytes that could not be sent, not yet said
	missing int64  // bytes dropped or lost in all
	kick    chan struct{}
	done    chan struct{}
	stopped chan struct{}
}

const (
	flushEvery = 250 * time.Millisecond
	maxBatch   = 256 << 10
)

// spool is where output waits: a file, or memory when no file can be made.
type spool interface {
	io.WriterAt
	io.ReaderAt
	Truncate(size int64) error
}

type memSpool struct{ b []byte }

func (m *memSpool) WriteAt(p []byte, off int64) (int, error) {
	m.b = append(m.b[:off], p...)
	return len(p), nil
}

func (m *memSpool) ReadAt(p []byte, off int64) (int, error) {
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memSpool) Truncate(size int64) error { m.b = m.b[:size]; return nil }

func newLogWriter(a *Agent, id string, attempt int) *logWriter {
	w := &logWriter{a: a, id: id, attempt: attempt, max: a.cfg.LogSpoolMax,
		kick: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{})}
	dir := filepath.Join(a.cfg.WorkDir, "log-spool")
	var f *os.File
	err := os.MkdirAll(dir, 0o700)
	if err == nil {
		f, err = os.CreateTemp(dir, fmt.Sprintf("job-%s-%d-*", filepath.Base(id), attempt))
	}
	if err != nil {
		a.logger.Warn("cannot make a log spool file; output waits in memory", "job_id", id, "error", err)
		w.spool = &memSpool{}
	} else {
		w.spool, w.path = f, f.Name()
	}
	go w.loop()
	return w
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.size+int64(len(p)) > w.max {
		w.dropped += int64(len(p))
		w.missing += int64(len(p))
		w.mu.Unlock()
		return len(p), nil
	}
	w.noteDropped()
	if _, err := w.spool.WriteAt(p, w.size); err != nil {
		w.dropped += int64(len(p))
		w.missing += int64(len(p))
		w.mu.Unlock()
		return len(p), nil
	}
	w.size += int64(len(p))
	full := w.size-w.sent >= maxBatch
	w.mu.Unlock()
	if full {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// noteDropped puts the note of dropped output in the spool where the
// output went missing. Called with w.mu held.
func (w *logWriter) noteDropped() {
	if w.dropped == 0 {
		return
	}
	note := fmt.Sprintf("\n[kiln worker %s] %d bytes of output dropped here: the worker's log spool (%d bytes) was full (the coordinator was unreachable or slower than the job)\n",
		w.a.cfg.Name, w.dropped, w.max)
	if _, err := w.spool.WriteAt([]byte(note), w.size); err == nil {
		w.size += int64(len(note))
		w.dropped = 0
	}
}

func (w *logWriter) loop() {
	defer close(w.stopped)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-w.kick:
		case <-w.done:
			w.mu.Lock()
			w.noteDropped()
			w.mu.Unlock()
			w.flush()
			return
		}
		w.flush()
	}
}

func (w *logWriter) flush() {
	buf := make([]byte, maxBatch)
	for {
		w.mu.Lock()
		n := min(w.size-w.sent, maxBatch)
		from := w.sent
		lost := w.lost
		w.mu.Unlock()
		if n == 0 {
			return
		}
		// Only this goroutine moves sent or truncates: [from, from+n) stays.
		chunk := buf[:n]
		if _, err := w.spool.ReadAt(chunk, from); err != nil && !errors.Is(err, io.EOF) {
			w.a.logger.Warn("read log spool", "job_id", w.id, "error", err)
		}
		if lost > 0 {
			note := fmt.Sprintf("\n[kiln worker %s] %d bytes of output lost here: they could not be sent to the coordinator\n", w.a.cfg.Name, lost)
			chunk = append([]byte(note), chunk...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := w.a.call(ctx, "append log", func(ctx context.Context, s string) error {
			stream, err := w.a.client.AppendLog(ctx)
			if err != nil {
				return err
			}
			if err := stream.Send(&wpb.AppendLogRequest{SessionId: s, JobId: w.id, Attempt: int32(w.attempt), Data: chunk}); err != nil {
				_, rerr := stream.CloseAndRecv()
				return rerr
			}
			_, err = stream.CloseAndRecv()
			return err
		})
		cancel()
		w.mu.Lock()
		w.sent += n
		if err != nil {
			w.lost += n
			w.missing += n
		} else {
			w.lost = 0
		}
		if w.sent == w.size {
			if terr := w.spool.Truncate(0); terr == nil {
				w.sent, w.size = 0, 0
			}
		}
		w.mu.Unlock()
		if err != nil {
			w.a.logger.Warn("log output dropped", "job_id", w.id, "bytes", n, "error", err)
		} else {
			w.a.cfg.Metrics.logBytes.Add(float64(len(chunk)))
		}
	}
}

// Missing returns how many bytes of output the coordinator did not get.
func (w *logWriter) Missing() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.missing
}

// Close sends what is left, stops the writer and removes its spool.
func (w *logWriter) Close() {
	close(w.done)
	<-w.stopped
	if f, ok := w.spool.(*os.File); ok {
		f.Close()
		_ = os.Remove(w.path)
	}
}
