package deb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// Indexes are xz-compressed by xz(1) at its level 6, single-threaded: one
// stream of one block, which is what apt's decompressor reads, and the same
// bytes as Debian's own tools write. The pure-Go LZMA2 encoder this
// replaced made files 1.18x larger than xz -6 on real Packages data (its
// binary-tree matcher is larger still), and apt fetches .xz first.

// xzArgs are the arguments of xz(1). --threads=1 keeps one block even where
// xz defaults to multi-threaded mode (5.6 and later).
var xzArgs = []string{"-6", "--threads=1", "--check=crc64", "--stdout", "--quiet"}

// errNoXZ says what to do when xz(1) is missing.
var errNoXZ = errors.New(`the xz command is needed for .xz indexes: install it (Debian package xz-utils), or leave "xz" out of the repository's compressions`)

// xzWriter compresses what is written to it into an underlying writer.
type xzWriter struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr bytes.Buffer
}

// newXZWriter starts xz(1) writing the compressed stream to w. Close must
// be called to finish the stream and wait for xz, or abort to stop it;
// xz is killed when ctx ends.
func newXZWriter(ctx context.Context, w io.Writer) (*xzWriter, error) {
	bin, err := exec.LookPath("xz")
	if err != nil {
		return nil, errNoXZ
	}
	x := &xzWriter{cmd: exec.CommandContext(ctx, bin, xzArgs...)}
	// XZ_OPT and XZ_DEFAULTS would change the level or the threads.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "XZ_OPT=") && !strings.HasPrefix(kv, "XZ_DEFAULTS=") {
			x.cmd.Env = append(x.cmd.Env, kv)
		}
	}
	x.cmd.Stdout = w
	x.cmd.Stderr = &x.stderr
	if x.stdin, err = x.cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}
	if err := x.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	return x, nil
}

func (x *xzWriter) Write(p []byte) (int, error) {
	n, err := x.stdin.Write(p)
	if err != nil {
		_ = x.Close()
		return n, fmt.Errorf("xz: %w", x.failure(err))
	}
	return n, nil
}

// Close ends the input and waits for xz to write the end of the stream.
func (x *xzWriter) Close() error {
	if x.cmd.ProcessState != nil {
		return nil
	}
	_ = x.stdin.Close()
	if err := x.cmd.Wait(); err != nil {
		return fmt.Errorf("xz: %w", x.failure(err))
	}
	return nil
}

// abort kills xz and waits for it: what it would still write is not
// wanted (a failed publish), and compressing the rest of a large index
// would only delay the error.
func (x *xzWriter) abort() {
	if x.cmd.ProcessState != nil {
		return
	}
	_ = x.cmd.Process.Kill()
	_ = x.stdin.Close()
	_ = x.cmd.Wait()
}

func (x *xzWriter) failure(err error) error {
	if msg := strings.TrimSpace(x.stderr.String()); msg != "" {
		return fmt.Errorf("%w: %s", err, msg)
	}
	return err
}

// xzCompress returns data as an .xz stream; xz is killed when ctx ends.
func xzCompress(ctx context.Context, data []byte) ([]byte, error) {
	var out bytes.Buffer
	w, err := newXZWriter(ctx, &out)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
