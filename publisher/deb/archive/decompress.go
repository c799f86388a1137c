package archive

import (
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// gzipReaders are gzip readers to reuse: each holds tens of kilobytes of
// window and tables, and an include of tens of thousands of packages
// opens two per package.
var gzipReaders sync.Pool

// Decompressor returns a reader for a member compressed as its name says
// (.gz, .xz, .zst or none) and a close function.
func Decompressor(name string, r io.Reader) (io.Reader, func(), error) {
	switch {
	case strings.HasSuffix(name, ".gz"):
		z, _ := gzipReaders.Get().(*gzip.Reader)
		var err error
		if z == nil {
			z, err = gzip.NewReader(r)
		} else {
			err = z.Reset(r)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %v", ErrFormat, name, err)
		}
		return z, func() { _ = z.Close(); gzipReaders.Put(z) }, nil
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
