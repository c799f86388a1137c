package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
)

func (f *Fleet) logPath(id string) string {
	return filepath.Join(f.cfg.StateDir, "logs", id+".log")
}

func (f *Fleet) casPath(sum string) string {
	return filepath.Join(f.cfg.StateDir, "artifacts", sum[:2], sum)
}

// appendSystem adds a line from the coordinator itself to a job's log.
func (f *Fleet) appendSystem(id, msg string) {
	line := fmt.Sprintf("[kiln %s] %s\n", f.cfg.Clock.Now().UTC().Format(time.RFC3339), msg)
	if err := f.appendFile(id, []byte(line)); err != nil {
		f.logger.Warn("append to job log", "job_id", id, "error", err)
	}
}

func (f *Fleet) appendFile(id string, data []byte) error {
	fh, err := os.OpenFile(f.logPath(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	_, err = fh.Write(data)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	f.notifyLog(id)
	return err
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
	return f.appendFile(jobID, data)
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
		n, err := f.sendFrom(id, &offset, buf, send)
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

func (f *Fleet) sendFrom(id string, offset *int64, buf []byte, send func([]byte) error) (int64, error) {
	fh, err := os.Open(f.logPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	var total int64
	for {
		n, err := fh.ReadAt(buf, *offset)
		if n > 0 {
			if serr := send(append([]byte(nil), buf[:n]...)); serr != nil {
				return total, serr
			}
			*offset += int64(n)
			total += int64(n)
		}
		if err == io.EOF || n == 0 {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// PutArtifact stores an uploaded artifact of the running attempt after
// checking its size and sha256; a mismatch is refused and nothing is kept.
func (f *Fleet) PutArtifact(session, jobID string, attempt int, a job.Artifact, r io.Reader) error {
	if err := f.sched.CheckAttempt(session, jobID, attempt); err != nil {
		return err
	}
	if err := job.CleanRelative(a.Name); err != nil {
		return fmt.Errorf("%w: artifact name %q: %v", ErrInvalid, a.Name, err)
	}
	if len(a.SHA256) != 64 || strings.Trim(a.SHA256, "0123456789abcdef") != "" {
		return fmt.Errorf("%w: artifact %s: sha256 %q is not 64 lower-case hex digits", ErrInvalid, a.Name, a.SHA256)
	}
	if a.Size < 0 || a.Size > f.cfg.MaxArtifactSize {
		return fmt.Errorf("%w: artifact %s: size %d is over the limit of %d bytes", ErrInvalid, a.Name, a.Size, f.cfg.MaxArtifactSize)
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
