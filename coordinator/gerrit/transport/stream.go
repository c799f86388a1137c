// Package transport receives Gerrit's events and only stores them: the
// SSH client that follows gerrit stream-events, and the HTTP handler that
// takes the webhooks plugin's posts. Each hands what it receives to an
// Inbox, which writes it down, and answers (or reads on) once it is
// stored; what is done with an event is decided later, elsewhere. SSH also
// runs commands such as gerrit review for the reporter.
package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"

	"github.com/kiln-build/kiln/coordinator/gerrit/event"
)

// MaxLine bounds one stream-events line and one webhook body; longer
// lines are skipped.
const MaxLine = 4 << 20

// Inbox writes down the events a transport receives.
type Inbox interface {
	// Accept writes down lines received from server in one transaction
	// (via is stream or webhook). An error that wraps event.ErrMalformed
	// or event.ErrUnsupported refuses what every line holds; any other
	// means nothing was stored.
	Accept(ctx context.Context, server string, lines [][]byte, via string) error
}

// Metrics are the transports' metrics; each may be nil.
type Metrics struct {
	// Connects counts stream connections by server and result (ok,
	// error); Up is 1 while a server's stream is connected.
	Connects *prometheus.CounterVec
	Up       *prometheus.GaugeVec
	// Malformed counts lines skipped, by server.
	Malformed *prometheus.CounterVec
	// BodyBytes are the webhook body bytes held; BodyWaits counts
	// requests that waited for room.
	BodyBytes prometheus.Gauge
	BodyWaits prometheus.Counter
}

// Backoff bounds the exponential wait between reconnects.
type Backoff struct {
	Min, Max time.Duration
}

// StreamConfig configures one server's event stream.
type StreamConfig struct {
	Server    string
	SSH       *SSH
	Reconnect Backoff
	// Keepalive is how often an idle connection is probed; one that does
	// not answer within the same time is reconnected. Zero: never.
	Keepalive time.Duration
	// Connected, when set, is called after every connect: events may have
	// been missed while the stream was down.
	Connected func()
	Logger    hclog.Logger
	Metrics   Metrics
}

// Stream follows one server's gerrit stream-events and hands every line
// to its inbox.
type Stream struct {
	cfg   StreamConfig
	inbox Inbox
}

// NewStream returns the stream of cfg.Server.
func NewStream(cfg StreamConfig, inbox Inbox) *Stream {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &Stream{cfg: cfg, inbox: inbox}
}

// Run keeps the event stream open, reconnecting with backoff, until ctx
// ends.
func (st *Stream) Run(ctx context.Context) error {
	log := st.cfg.Logger.With("server", st.cfg.Server, "address", st.cfg.SSH.addr)
	wait := st.cfg.Reconnect.Min
	for {
		start := time.Now()
		got, err := st.once(ctx)
		st.up(0)
		if ctx.Err() != nil {
			return nil
		}
		if got > 0 || time.Since(start) > st.cfg.Reconnect.Max {
			wait = st.cfg.Reconnect.Min
		}
		log.Warn("event stream ended; reconnecting", "error", err, "events", got, "wait", wait)
		// Up to a quarter of jitter so that many coordinators do not reconnect in step.
		d := wait + time.Duration(rand.Int64N(int64(wait)/4+1))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(wait*2, st.cfg.Reconnect.Max)
	}
}

// once runs gerrit stream-events on one connection and stores events
// until it breaks; it returns how many lines it read.
func (st *Stream) once(ctx context.Context) (int, error) {
	name := st.cfg.Server
	c, err := st.cfg.SSH.dial(ctx)
	if err != nil {
		st.connected("error")
		return 0, err
	}
	defer c.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	context.AfterFunc(sctx, func() { c.Close() })
	sess, err := c.NewSession()
	if err != nil {
		st.connected("error")
		return 0, fmt.Errorf("ssh session: %w", err)
	}
	defer sess.Close()
	out, err := sess.StdoutPipe()
	if err != nil {
		return 0, fmt.Errorf("stdout of stream-events: %w", err)
	}
	var stderr bytes.Buffer
	sess.Stderr = &LimitedWriter{W: &stderr, N: 4096}
	if err := sess.Start("gerrit stream-events"); err != nil {
		st.connected("error")
		return 0, fmt.Errorf("start gerrit stream-events: %w", err)
	}
	st.connected("ok")
	st.up(1)
	st.cfg.Logger.Info("event stream connected", "server", name)
	// Events may have been missed while disconnected.
	if st.cfg.Connected != nil {
		st.cfg.Connected()
	}
	if st.cfg.Keepalive > 0 {
		go keepalive(sctx, c, st.cfg.Keepalive)
	}
	r := bufio.NewReaderSize(out, 64<<10)
	n := 0
	// Lines that arrived together are stored together, in one
	// transaction, before the next are read.
	var batch [][]byte
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := st.store(ctx, batch); err != nil {
			return err
		}
		batch, size = batch[:0], 0
		return nil
	}
	for {
		line, err := readLine(r)
		if len(line) > 0 && err == nil {
			n++
			batch, size = append(batch, line), size+len(line)
		}
		if err != nil || r.Buffered() == 0 || len(batch) >= streamBatch || size >= MaxLine {
			if ferr := flush(); ferr != nil {
				return n, ferr
			}
		}
		if errors.Is(err, errLineTooLong) {
			if m := st.cfg.Metrics.Malformed; m != nil {
				m.WithLabelValues(name).Inc()
			}
			st.cfg.Logger.Warn("skipping event longer than the limit", "server", name, "limit", MaxLine, "start", Truncate(line, 512))
			continue
		}
		if err != nil {
			if len(line) > 0 {
				st.cfg.Logger.Warn("stream ended in the middle of an event; the reconciler covers it", "server", name, "partial", Truncate(line, 512))
			}
			c.Close()
			_ = sess.Wait() // lets the stderr copy finish
			if msg := bytes.TrimSpace(stderr.Bytes()); len(msg) > 0 {
				err = fmt.Errorf("%w: %s", err, msg)
			}
			return n, fmt.Errorf("read stream: %w", err)
		}
	}
}

// store hands lines to the inbox until they are stored or refused. A
// store that fails (the database unreachable, a full disk) is tried
// again with the reconnect backoff while the stream is not read, so
// that nothing read from it is lost: Gerrit keeps what follows queued
// for this connection meanwhile, and the reconciler covers what it
// drops. Only ctx ending gives up on the lines.
func (st *Stream) store(ctx context.Context, lines [][]byte) error {
	wait := max(st.cfg.Reconnect.Min, 10*time.Millisecond)
	for attempt := 1; ; attempt++ {
		err := st.inbox.Accept(ctx, st.cfg.Server, lines, "stream")
		if err == nil || event.Refused(err) {
			if attempt > 1 {
				st.cfg.Logger.Info("stream events stored after failures", "server", st.cfg.Server, "events", len(lines), "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("store events: %w", err)
		}
		st.cfg.Logger.Error("could not store stream events; holding them and trying again", "server", st.cfg.Server,
			"events", len(lines), "attempt", attempt, "wait", wait, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("store events: %w", err)
		case <-t.C:
		}
		wait = min(wait*2, max(st.cfg.Reconnect.Max, wait))
	}
}

// streamBatch bounds how many stream lines are stored in one transaction.
const streamBatch = 256

var errLineTooLong = errors.New("line too long")

// readLine reads one newline-terminated line of at most MaxLine bytes. A
// longer line is consumed and reported as errLineTooLong with its start. A
// final line without newline is returned with io.EOF.
func readLine(r *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(buf)+len(frag) > MaxLine {
			start := append(buf, frag...)[:512]
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			if err != nil {
				return start, err
			}
			return start, errLineTooLong
		}
		buf = append(buf, frag...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return buf, err
		}
		return buf[:len(buf)-1], nil
	}
}

// keepalive probes the connection and closes it when the server stops
// answering, which ends the stream and triggers a reconnect.
func keepalive(ctx context.Context, c *ssh.Client, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		done := make(chan error, 1)
		go func() {
			_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				c.Close()
				return
			}
		case <-time.After(every):
			c.Close()
			return
		case <-ctx.Done():
			return
		}
	}
}

func (st *Stream) connected(result string) {
	if m := st.cfg.Metrics.Connects; m != nil {
		m.WithLabelValues(st.cfg.Server, result).Inc()
	}
}

func (st *Stream) up(v float64) {
	if m := st.cfg.Metrics.Up; m != nil {
		m.WithLabelValues(st.cfg.Server).Set(v)
	}
}

// LimitedWriter keeps the first N bytes written to W and drops the rest,
// for a command's stderr.
type LimitedWriter struct {
	W io.Writer
	N int
}

func (l *LimitedWriter) Write(p []byte) (int, error) {
	if l.N > 0 {
		k := min(len(p), l.N)
		l.N -= k
		_, _ = l.W.Write(p[:k])
	}
	return len(p), nil
}

// Truncate returns b as a string of at most n bytes, marked when cut.
func Truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
