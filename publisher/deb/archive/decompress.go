package archive

import (
	"compress/gzip"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Decompressor returns a reader for a member compressed as its name says
// (.gz, .xz, .zst or none) and a close function.
func Decompressor(name string, r io.Reader) (io.Reader, func(), error) {
	switch {
	case strings.HasSuffix(name, ".gz"):
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %v", ErrFormat, name, err)
		}
		return z, func() { _ = z.Close() }, nil
	case strings.HasSuffix(name, ".xz"):
		z, err := xz.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %v", ErrFormat, name, err)
		}
		return z, func() {}, nil
	case strings.HasSuffix(name, ".zst"):
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(256<<20))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %v", ErrFormat, name, err)
		}
		return z, z.Close, nil
	case strings.HasSuffix(name, ".tar"):
		return r, func() {}, nil
	}
	return nil, nil, fmt.Errorf("%w: %s: unknown compression", ErrFormat, name)
}
