package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/store"
	"github.com/kiln-build/kiln/internal/artifactname"
)

func (f *Fleet) logPath(id string) string {
	return filepath.Join(f.cfg.StateDir, "logs", id+".log")
}

func (f *Fleet) casPath(sum string) string {
	return filepath.Join(f.cfg.StateDir, "artifacts", sum[:2], sum)
}

// A job's log is the worker's output (logs/ID.log, created when the first
// output arrives) with the coordinator's notes placed in it: each note sits
// where the output ended when it was added. Notes go to the store with the
// job changes they describe, so a job that prints nothing costs no file.
// Logs written before notes existed have their notes inline in the file.
//
// logLock(id) orders, for one job, output appends, notes and the snapshot a
// reader takes (output size plus notes), so that every reader sees the same
// sequence of bytes and a follower's offsets stay valid.

func (f *Fleet) logLock(id string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return &f.logLocks[h.Sum32()%uint32(len(f.logLocks))]
}

// liveLog is what the fleet keeps in memory about a live job's log.
// Its fields change only under logLock(id).
type liveLog struct {
	notes []store.Note
	// size is the length of the worker's output, or -1 when not known
	// (a job from before a restart).
	size int64
	// Over MaxLogSize, output goes to the tail file (logs/ID.log.tail),
	// of which the last MaxLogSize/2 bytes are kept: tail is its length,
	// cut the bytes dropped from it so far. The next note, or the end of
	// the attempt, moves a line saying so and the tail into the log.
	tail, cut int64
}

// note adds a coordinator line to a job's log and returns it for the caller
// to write to the store with the job change it describes.
func (f *Fleet) note(ctx context.Context, id, msg string) store.Note {
	line := fmt.Sprintf("[kiln %s] %s\n", f.cfg.Clock.Now().UTC().Format(time.RFC3339), msg)
	mu := f.logLock(id)
	mu.Lock()
	l := f.liveLog(ctx, id)
	f.sealTail(id, l)
	if l.size < 0 {
		l.size = f.outputSize(id)
	}
	n := store.Note{JobID: id, At: l.size, Line: line}
	if len(l.notes) > 0 {
		n.Seq = l.notes[len(l.notes)-1].Seq + 1
	}
	l.notes = append(l.notes, n)
	mu.Unlock()
	f.notifyLog(id)
	return n
}

// newLog records that a new job has no output and no notes yet, so that
// its first note need not ask the store or the file system.
func (f *Fleet) newLog(id string) {
	f.notesMu.Lock()
	if _, ok := f.logs[id]; !ok {
		f.logs[id] = &liveLog{}
	}
	f.notesMu.Unlock()
}

// liveLog returns the in-memory state of a job's log, loading its notes
// from the store first when there is none (a job from before a restart).
// Called with logLock(id) held.
func (f *Fleet) liveLog(ctx context.Context, id string) *liveLog {
	f.notesMu.Lock()
	l, ok := f.logs[id]
	f.notesMu.Unlock()
	if ok {
		return l
	}
	notes, err := f.st.Notes(ctx, id)
	if err != nil {
		f.logger.Warn("read job log notes", "job_id", id, "error", err)
	}
	l = &liveLog{notes: notes, size: -1}
	f.notesMu.Lock()
	f.logs[id] = l
	f.notesMu.Unlock()
	return l
}

// forgetNotes drops the in-memory logs of final jobs whose notes are
// durable in the store.
func (f *Fleet) forgetNotes(jobs []*job.Job) {
	f.notesMu.Lock()
	for _, j := range jobs {
		if j.State.Final() {
			delete(f.logs, j.ID)
		}
	}
	f.notesMu.Unlock()
}

func (f *Fleet) outputSize(id string) int64 {
	st, err := os.Stat(f.logPath(id))
	if err != nil {
		return 0
	}
	return st.Size()
}

func appendTo(path string, data []byte) error {
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	_, err = fh.Write(data)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	return err
}

func (f *Fleet) appendFile(id string, data []byte) error {
	mu := f.logLock(id)
	mu.Lock()
	var err error
	if f.cfg.MaxLogSize > 0 {
		err = f.appendCapped(id, data)
	} else {
		err = appendTo(f.logPath(id), data)
		f.notesMu.Lock()
		if l := f.logs[id]; l != nil {
			if err == nil && l.size >= 0 {
				l.size += int64(len(data))
			} else {
				l.size = -1
			}
		}
		f.notesMu.Unlock()
	}
	mu.Unlock()
	f.notifyLog(id)
	return err
}

// appendCapped appends output under MaxLogSize: the head up to half of
// it in the log, the rest in the tail file, of which the last half is
// kept. Called with logLock(id) held.
func (f *Fleet) appendCapped(id string, data []byte) error {
	l := f.liveLog(context.Background(), id)
	if l.size < 0 {
		l.size = f.outputSize(id)
	}
	half := f.cfg.MaxLogSize / 2
	if l.tail == 0 && l.size < half {
		n := min(int64(len(data)), half-l.size)
		if err := appendTo(f.logPath(id), data[:n]); err != nil {
			l.size = -1
			return err
		}
		l.size += n
		data = data[n:]
	}
	if len(data) == 0 {
		return nil
	}
	tail := f.logPath(id) + ".tail"
	if err := appendTo(tail, data); err != nil {
		return err
	}
	l.tail += int64(len(data))
	if l.tail > 2*half {
		return f.trimTail(l, tail, half)
	}
	return nil
}

// trimTail keeps the last keep bytes of the tail file.
func (f *Fleet) trimTail(l *liveLog, tail string, keep int64) error {
	if l.tail <= keep {
		return nil
	}
	b, err := os.ReadFile(tail)
	if err != nil {
		return err
	}
	drop := int64(len(b)) - keep
	if drop <= 0 {
		return nil
	}
	tmp := tail + ".tmp"
	if err := os.WriteFile(tmp, b[drop:], 0o640); err != nil {
		return err
	}
	if err := os.Rename(tmp, tail); err != nil {
		return err
	}
	l.cut += drop
	l.tail = keep
	return nil
}

// sealTail moves the line saying where output was cut, and the kept
// tail, into the log. Called with logLock(id) held, before a note is
// placed, so the note follows the output it comes after.
func (f *Fleet) sealTail(id string, l *liveLog) {
	if l.tail == 0 {
		return
	}
	tail := f.logPath(id) + ".tail"
	half := f.cfg.MaxLogSize / 2
	if err := f.trimTail(l, tail, half); err != nil {
		f.logger.Warn("trim log tail", "job_id", id, "error", err)
	}
	b, err := os.ReadFile(tail)
	if err != nil {
		f.logger.Warn("read log tail", "job_id", id, "error", err)
		return
	}
	line := fmt.Sprintf("\n[kiln %s] %d bytes of output cut here: the log is over the coordinator's max_log_size (%d bytes); its first and last %d bytes are kept\n",
		f.cfg.Clock.Now().UTC().Format(time.RFC3339), l.cut, f.cfg.MaxLogSize, half)
	if err := appendTo(f.logPath(id), append([]byte(line), b...)); err != nil {
		f.logger.Warn("append log tail", "job_id", id, "error", err)
		l.size = -1
		return
	}
	_ = os.Remove(tail)
	if l.size >= 0 {
		l.size += int64(len(line) + len(b))
	}
	l.tail, l.cut = 0, 0
}

// MaxLogChunk bounds one log message from a worker.
const MaxLogChunk = 1 << 20

// AppendLog appends a worker's output for the running attempt.
func (f *Fleet) AppendLog(session, jobID string, attempt int, data []byte) error {
	if len(data) > MaxLogChunk {
		return fmt.Errorf("%w: log chunk of %d bytes: at most %d", ErrInvalid, len(data), MaxLogChunk)
	}
	if err := f.sched.CheckAttempt(session, jobID, attempt); err != nil {
		return err
	}
	if err := f.appendFile(jobID, data); err != nil {
		if store.IsFull(err) {
			return fmt.Errorf("%w: append to the log of job %s: the coordinator's disk is full (state dir %s): %v", ErrNoSpace, jobID, f.cfg.StateDir, err)
		}
		return fmt.Errorf("append to the log of job %s: %w", jobID, err)
	}
	return nil
}

func (f *Fleet) notifyLog(id string) {
	f.logMu.Lock()
	if ch, ok := f.logSubs[id]; ok {
		close(ch)
		delete(f.logSubs, id)
	}
	f.logMu.Unlock()
}

func (f *Fleet) logChanged(id string) <-chan struct{} {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	ch, ok := f.logSubs[id]
	if !ok {
		ch = make(chan struct{})
		f.logSubs[id] = ch
	}
	return ch
}

// StreamLog sends a job's log from offset through send. With follow it
// waits for more until the job is final and returns the final job.
func (f *Fleet) StreamLog(ctx context.Context, id string, offset int64, follow bool, send func([]byte) error) (*job.Job, error) {
	if _, _, err := f.Get(ctx, id); err != nil {
		return nil, err
	}
	buf := make([]byte, 64<<10)
	for {
		changed := f.logChanged(id)
		j, _, err := f.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		n, err := f.sendFrom(ctx, id, &offset, buf, send)
		if err != nil {
			return nil, err
		}
		if !follow || (j.State.Final() && n == 0) {
			return j, nil
		}
		if n > 0 {
			continue
		}
		select {
		case <-changed:
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// sendFrom sends the job's log from *offset on and advances *offset.
func (f *Fleet) sendFrom(ctx context.Context, id string, offset *int64, buf []byte, send func([]byte) error) (int64, error) {
	mu := f.logLock(id)
	mu.Lock()
	size := f.outputSize(id)
	f.notesMu.Lock()
	l := f.logs[id]
	f.notesMu.Unlock()
	var notes []store.Note
	var err error
	if l != nil {
		notes = l.notes[:len(l.notes):len(l.notes)]
	} else {
		notes, err = f.st.Notes(ctx, id)
	}
	mu.Unlock()
	if err != nil {
		return 0, err
	}
	var fh *os.File
	if size > 0 {
		fh, err = os.Open(f.logPath(id))
		if err != nil {
			return 0, err
		}
		defer fh.Close()
	}
	var total, pos, done int64 // pos: log offset; done: output bytes placed
	// output sends output bytes [done, to) from where *offset falls in them.
	output := func(to int64) error {
		if to > size {
			to = size
		}
		for to > done {
			if skip := *offset - pos; skip > 0 {
				n := min(skip, to-done)
				pos, done = pos+n, done+n
				continue
			}
			n, err := fh.ReadAt(buf[:min(int64(len(buf)), to-done)], done)
			if n > 0 {
				if serr := send(append([]byte(nil), buf[:n]...)); serr != nil {
					return serr
				}
				pos, done, total, *offset = pos+int64(n), done+int64(n), total+int64(n), *offset+int64(n)
			}
			if err != nil && !(err == io.EOF && n > 0) {
				return fmt.Errorf("read log of job %s: %w", id, err)
			}
		}
		return nil
	}
	for _, n := range notes {
		if err := output(n.At); err != nil {
			return total, err
		}
		line := []byte(n.Line)
		if skip := *offset - pos; skip >= int64(len(line)) {
			pos += int64(len(line))
			continue
		} else if skip > 0 {
			line, pos = line[skip:], pos+skip
		}
		if err := send(append([]byte(nil), line...)); err != nil {
			return total, err
		}
		pos, total, *offset = pos+int64(len(line)), total+int64(len(line)), *offset+int64(len(line))
	}
	return total, output(size)
}

// checkUpload checks an upload's header: the attempt is running, and the
// artifact's name, sha256 and size are well-formed and within bounds.
func (f *Fleet) checkUpload(session, jobID string, attempt int, a job.Artifact) error {
	if err := f.sched.CheckAttempt(session, jobID, attempt); err != nil {
		return err
	}
	if err := artifactname.Check(a.Name); err != nil {
		return fmt.Errorf("%w: artifact name %q: %v", ErrInvalid, a.Name, err)
	}
	if len(a.SHA256) != 64 || strings.Trim(a.SHA256, "0123456789abcdef") != "" {
		return fmt.Errorf("%w: artifact %s: sha256 %q is not 64 lower-case hex digits", ErrInvalid, a.Name, a.SHA256)
	}
	if a.Size < 0 {
		return fmt.Errorf("%w: artifact %s: size %d is negative", ErrInvalid, a.Name, a.Size)
	}
	if a.Size > f.cfg.MaxArtifactSize {
		return fmt.Errorf("%w: artifact %s (%d bytes) is over the coordinator's limit of %d bytes (max_artifact_size)", ErrTooLarge, a.Name, a.Size, f.cfg.MaxArtifactSize)
	}
	return nil
}

// HasArtifact checks an upload's header as PutArtifact does and reports
// whether the coordinator already holds the artifact's content: a file
// of its size whose bytes have its sha256 (a damaged copy does not
// count, and the upload replaces it). The upload need not be sent then.
func (f *Fleet) HasArtifact(session, jobID string, attempt int, a job.Artifact) (bool, error) {
	if err := f.checkUpload(session, jobID, attempt, a); err != nil {
		return false, err
	}
	fh, err := os.Open(f.casPath(a.SHA256))
	if err != nil {
		return false, nil
	}
	defer fh.Close()
	if st, err := fh.Stat(); err != nil || st.Size() != a.Size {
		return false, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return false, nil
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.SHA256 {
		f.logger.Warn("stored artifact content is damaged; the upload replaces it", "sha256", a.SHA256, "has", got)
		return false, nil
	}
	return true, nil
}

// PutArtifact stores an uploaded artifact of the running attempt after
// checking its size and sha256; a mismatch is refused and nothing is kept.
func (f *Fleet) PutArtifact(session, jobID string, attempt int, a job.Artifact, r io.Reader) error {
	if err := f.checkUpload(session, jobID, attempt, a); err != nil {
		return err
	}
	dst := f.casPath(a.SHA256)
	tmp, err := os.CreateTemp(filepath.Join(f.cfg.StateDir, "tmp"), "upload-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, a.Size+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("receive artifact %s: %w", a.Name, err)
	}
	if n != a.Size {
		return fmt.Errorf("%w: artifact %s: received %d bytes, header said %d", ErrInvalid, a.Name, n, a.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.SHA256 {
		return fmt.Errorf("%w: artifact %s: content has sha256 %s, header said %s", ErrInvalid, a.Name, got, a.SHA256)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// OpenArtifact opens a job's artifact by name.
func (f *Fleet) OpenArtifact(ctx context.Context, jobID, name string) (*os.File, job.Artifact, error) {
	j, _, err := f.Get(ctx, jobID)
	if err != nil {
		return nil, job.Artifact{}, err
	}
	for _, a := range j.Artifacts {
		if a.Name == name {
			fh, err := os.Open(f.casPath(a.SHA256))
			if err != nil {
				return nil, a, fmt.Errorf("open artifact %s of job %s: %w", name, jobID, err)
			}
			return fh, a, nil
		}
	}
	return nil, job.Artifact{}, fmt.Errorf("job %s has no artifact %q: %w", jobID, name, ErrNotFound)
}

// ArtifactPath returns where an artifact's content is kept.
func (f *Fleet) ArtifactPath(a job.Artifact) string { return f.casPath(a.SHA256) }
