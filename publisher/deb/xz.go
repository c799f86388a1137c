package deb

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"hash/crc64"
	"runtime"
	"sync"

	"github.com/ulikunitz/xz/lzma"
)

// The .xz container (tukaani.org xz-file-format 1.1.0) is written here so
// that a large index is compressed as several blocks in parallel inside ONE
// stream: apt's decompressor reads a single stream only, but any number of
// blocks in it. Each block's LZMA2 data comes from ulikunitz/xz/lzma.

const (
	xzBlockSize  = 2 << 20 // most uncompressed bytes per block
	xzMinBlock   = 256 << 10
	xzDictCap    = 8 << 20
	xzCheckCRC64 = 0x04
	xzMagic      = "\xfd7zXZ\x00"
)

var (
	crc64ECMA = crc64.MakeTable(crc64.ECMA)
)

type xzBlock struct {
	data         []byte // LZMA2 stream, unpadded
	uncompressed int
	check        uint64
}

// xzCompress returns data as an .xz stream of blocks compressed in parallel.
func xzCompress(data []byte) ([]byte, error) {
	// Blocks of at most 2 MiB, and enough of them to keep every CPU busy
	// on a mid-sized index, but not so small that matches are lost.
	size := min(xzBlockSize, max(xzMinBlock, (len(data)+runtime.GOMAXPROCS(0)-1)/runtime.GOMAXPROCS(0)))
	var chunks [][]byte
	for len(data) > size {
		chunks = append(chunks, data[:size])
		data = data[size:]
	}
	if len(data) > 0 || len(chunks) == 0 {
		chunks = append(chunks, data)
	}
	blocks := make([]xzBlock, len(chunks))
	errs := make([]error, len(chunks))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(len(chunks), runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for i := range next {
				blocks[i], errs[i] = xzCompressBlock(chunks[i])
			}
		})
	}
	for i := range chunks {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}

	var out bytes.Buffer
	flags := []byte{0x00, xzCheckCRC64}
	out.WriteString(xzMagic)
	out.Write(flags)
	out.Write(le32(crc32.ChecksumIEEE(flags)))

	header := xzBlockHeader()
	var index bytes.Buffer
	index.WriteByte(0x00)
	index.Write(uvarint(uint64(len(blocks))))
	for _, b := range blocks {
		out.Write(header)
		out.Write(b.data)
		for range pad4(len(b.data)) {
			out.WriteByte(0)
		}
		out.Write(le64(b.check))
		unpadded := len(header) + len(b.data) + 8
		index.Write(uvarint(uint64(unpadded)))
		index.Write(uvarint(uint64(b.uncompressed)))
	}
	for range pad4(index.Len()) {
		index.WriteByte(0)
	}
	index.Write(le32(crc32.ChecksumIEEE(index.Bytes())))
	out.Write(index.Bytes())

	footer := append(le32(uint32(index.Len()/4-1)), flags...)
	out.Write(le32(crc32.ChecksumIEEE(footer)))
	out.Write(footer)
	out.WriteString("YZ")
	return out.Bytes(), nil
}

func xzCompressBlock(data []byte) (xzBlock, error) {
	var buf bytes.Buffer
	w, err := lzma.Writer2Config{DictCap: xzDictCap}.NewWriter2(&buf)
	if err != nil {
		return xzBlock{}, fmt.Errorf("xz: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return xzBlock{}, fmt.Errorf("xz: %w", err)
	}
	if err := w.Close(); err != nil {
		return xzBlock{}, fmt.Errorf("xz: %w", err)
	}
	return xzBlock{data: buf.Bytes(), uncompressed: len(data), check: crc64.Checksum(data, crc64ECMA)}, nil
}

// xzBlockHeader is the header of every block: one LZMA2 filter with an
// 8 MiB dictionary, no optional sizes.
func xzBlockHeader() []byte {
	h := []byte{0, 0x00, 0x21, 0x01, xzDictByte(xzDictCap)}
	for len(h)%4 != 0 {
		h = append(h, 0)
	}
	h[0] = byte((len(h)+4)/4 - 1)
	return append(h, le32(crc32.ChecksumIEEE(h))...)
}

// xzDictByte encodes an LZMA2 dictionary size (a power of two or 3<<n).
func xzDictByte(size int) byte {
	for b := 0; b < 40; b++ {
		if (2|b&1)<<(b/2+11) >= size {
			return byte(b)
		}
	}
	return 40
}

func pad4(n int) int { return (4 - n%4) % 4 }

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func uvarint(v uint64) []byte { return binary.AppendUvarint(nil, v) }
