package agent

import (
	"context"
	"sync"
	"time"

	wpb "github.com/kiln-build/kiln/proto/kiln/worker/v1"
)

// logWriter batches a job's output and sends it to the coordinator every
// flushEvery or when maxBatch bytes are waiting, so a log is live without a
// call per line.
type logWriter struct {
	a       *Agent
	id      string
	attempt int

	mu      sync.Mutex
	buf     []byte
	kick    chan struct{}
	done    chan struct{}
	stopped chan struct{}
}

const (
	flushEvery = 250 * time.Millisecond
	maxBatch   = 256 << 10
)

func newLogWriter(a *Agent, id string, attempt int) *logWriter {
	w := &logWriter{a: a, id: id, attempt: attempt, kick: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{})}
	go w.loop()
	return w
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf = append(w.buf, p...)
	full := len(w.buf) >= maxBatch
	w.mu.Unlock()
	if full {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
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
			w.flush()
			return
		}
		w.flush()
	}
}

func (w *logWriter) flush() {
	for {
		w.mu.Lock()
		n := len(w.buf)
		if n > maxBatch {
			n = maxBatch
		}
		chunk := append([]byte(nil), w.buf[:n]...)
		w.mu.Unlock()
		if n == 0 {
			return
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
		w.buf = w.buf[n:]
		w.mu.Unlock()
		if err != nil {
			w.a.logger.Warn("log output dropped", "job_id", w.id, "bytes", n, "error", err)
		} else {
			w.a.cfg.Metrics.logBytes.Add(float64(n))
		}
	}
}

// Close sends what is left and stops the writer.
func (w *logWriter) Close() {
	close(w.done)
	<-w.stopped
}
