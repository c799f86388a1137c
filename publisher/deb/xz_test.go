package deb

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"testing"

	"github.com/ulikunitz/xz"

	"github.com/kiln-build/kiln/internal/testenv"
)

func TestXZCompressIsOneStreamTheDecodersRead(t *testing.T) {
	t.Parallel()
	xzTool := testenv.Tool(t, "xz")
	var big bytes.Buffer
	for i := 0; big.Len() < 2*xzBlockSize+123; i++ {
		fmt.Fprintf(&big, "Package: p%d\nVersion: 1.%d\nDescription: filler %d\n\n", i, i%97, i*7919)
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{{"empty", nil}, {"small", []byte("Package: a\n")}, {"mid-sized, split between CPUs", big.Bytes()[:3*xzMinBlock+5]}, {"largest block exactly", big.Bytes()[:xzBlockSize]}, {"many blocks", big.Bytes()}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			packed, err := xzCompress(tc.data)
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
