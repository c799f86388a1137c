package deb

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/ulikunitz/xz"

	"github.com/kiln-build/kiln/internal/testenv"
)

func TestXZCompressIsOneStreamTheDecodersRead(t *testing.T) {
	t.Parallel()
	xzTool := testenv.Tool(t, "xz")
	var big bytes.Buffer
	for i := 0; big.Len() < 1<<20; i++ {
		fmt.Fprintf(&big, "Package: p%d\nVersion: 1.%d\nDescription: filler %d\n\n", i, i%97, i*7919)
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{{"empty", nil}, {"small", []byte("Package: a\n")}, {"mid-sized", big.Bytes()[:3<<18+5]}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			packed, err := xzCompress(context.Background(), tc.data)
			if err != nil {
				t.Fatal(err)
			}
			// xz(1) in single-stream mode: it refuses anything after
			// the first stream, as apt's reader ignores it.
			cmd := exec.Command(xzTool, "--decompress", "--stdout", "--single-stream")
			cmd.Stdin = bytes.NewReader(packed)
			got, err := cmd.Output()
			if err != nil {
				t.Fatalf("xz --single-stream -d: %v", err)
			}
			if !bytes.Equal(got, tc.data) {
				t.Fatalf("xz -d gives %d bytes, want %d", len(got), len(tc.data))
			}
			test := exec.Command(xzTool, "--test", "--single-stream")
			test.Stdin = bytes.NewReader(packed)
			if out, err := test.CombinedOutput(); err != nil {
				t.Fatalf("xz --test: %v %s", err, out)
			}
			r, err := xz.NewReader(bytes.NewReader(packed))
			if err != nil {
				t.Fatal(err)
			}
			r.SingleStream = true
			got, err = io.ReadAll(r)
			if err != nil || !bytes.Equal(got, tc.data) {
				t.Fatalf("ulikunitz/xz reads %d bytes, %v", len(got), err)
			}
		})
	}
}

// TestXZCompressIsNoLargerThanXZ6 compresses real Debian Packages data (every
// 50th stanza of bookworm's main/binary-amd64, kept xz-packed in testdata)
// and compares the size with what xz -6 makes of the same bytes.
func TestXZCompressIsNoLargerThanXZ6(t *testing.T) {
	t.Parallel()
	xzTool := testenv.Tool(t, "xz")
	unpack := exec.Command(xzTool, "--decompress", "--stdout", filepath.Join("testdata", "bookworm-main-amd64-Packages-sample.xz"))
	data, err := unpack.Output()
	if err != nil {
		t.Fatalf("unpack testdata: %v", err)
	}
	if !bytes.HasPrefix(data, []byte("Package: ")) || len(data) < 500<<10 {
		t.Fatalf("testdata is not a Packages index of at least 500 KiB (%d bytes)", len(data))
	}
	ref := exec.Command(xzTool, "-6", "--stdout")
	ref.Stdin = bytes.NewReader(data)
	want, err := ref.Output()
	if err != nil {
		t.Fatalf("xz -6: %v", err)
	}
	got, err := xzCompress(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) > len(want) {
		t.Errorf("Packages.xz of %d bytes is %d bytes, xz -6 makes %d (%.3fx)", len(data), len(got), len(want), float64(len(got))/float64(len(want)))
	}
	dec := exec.Command(xzTool, "--decompress", "--stdout", "--single-stream")
	dec.Stdin = bytes.NewReader(got)
	back, err := dec.Output()
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("xz --single-stream -d gives %d bytes (%v), want the %d compressed", len(back), err, len(data))
	}
}

// TestXZAbortKillsXZ: a publish that fails stops xz at once instead of
// letting it compress the rest of what it was given (seconds for a large
// index): both the single-block writer and the block writer kill theirs.
func TestXZAbortKillsXZ(t *testing.T) {
	t.Parallel()
	testenv.Tool(t, "xz")
	noise := make([]byte, 8<<20) // seconds of work for xz -6
	rand.Read(noise)

	t.Run("one block", func(t *testing.T) {
		t.Parallel()
		x, err := newXZWriter(context.Background(), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x.Write(noise); err != nil {
			t.Fatal(err)
		}
		x.abort()
		ws, ok := x.cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() {
			t.Fatalf("xz was not killed: %v", x.cmd.ProcessState)
		}
	})
	t.Run("blocks", func(t *testing.T) {
		t.Parallel()
		x, err := newXZBlockWriter(io.Discard, 1<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		x.Write(noise)
		if err := x.cut(); err != nil {
			t.Fatal(err)
		}
		pending := slices.Clone(x.pending)
		if len(pending) != 1 {
			t.Fatalf("%d chunks pending, want 1", len(pending))
		}
		x.abort()
		if pending[0].err == nil {
			t.Fatal("the chunk's xz ran to the end after the abort")
		}
	})
}
