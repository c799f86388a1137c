package deb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
)

// An index can also be written as one xz stream of many blocks (what
// xz -T writes, and what apt's decompressor reads: one stream, any number
// of blocks). The index text is cut into chunks at stanza boundaries, each
// chunk is compressed by xz(1) -6 on its own into one block, and the
// stream around the blocks (header, index, footer) is written here, as the
// .xz file format (tukaani.org/xz/xz-file-format.txt) lays it out. A block
// is kept in an XZBlockCache by the sha256 of its chunk, so a publish
// compresses only the chunks that changed.
//
// The cuts depend on the stanzas, not on offsets: a chunk ends after a
// stanza once it holds at least the block size and the hash of the
// stanza's package name is one in xzCutOdds (or, rarely, when
// xzMaxOver stanzas past the block size picked none). Adding or removing
// a stanza changes its own chunk, and rarely the next; the chunks after
// keep their bytes.

// xzCutOdds is how rare a cut stanza is: a chunk overshoots the block
// size by about this many stanzas.
const xzCutOdds = 16

// xzMaxOver bounds a chunk at this many stanzas past the block size when
// no stanza's name picks a cut: a chance of (15/16)^128, 1 in 4000.
const xzMaxOver = 8 * xzCutOdds

// XZBlock is one compressed block of an .xz stream.
type XZBlock struct {
	// Data is the block as it lies in a stream: block header, compressed
	// data, block padding and the CRC64 of the uncompressed data.
	Data []byte
	// UnpaddedSize is the size of Data without the block padding, as the
	// stream's index records it.
	UnpaddedSize int64
	// UncompressedSize is the size of the chunk the block holds.
	UncompressedSize int64
}

// XZBlockCache keeps compressed blocks by the sha256 of their
// uncompressed bytes. Block returns false for a block it does not have, or
// has but cannot vouch for (its content no longer matches what was put).
type XZBlockCache interface {
	Block(sum [sha256.Size]byte) (XZBlock, bool)
	Put(sum [sha256.Size]byte, b XZBlock) error
}

// xzMagic and xzFooterMagic open and close a stream.
var (
	xzMagic       = []byte{0xFD, '7', 'z', 'X', 'Z', 0x00}
	xzFooterMagic = []byte{'Y', 'Z'}
	// xzFlags: check type CRC64, what xzArgs ask xz(1) for.
	xzFlags = []byte{0x00, 0x04}
)

// appendMultibyte appends v as an .xz multibyte integer: seven bits a
// byte, least significant first, the high bit set on all but the last.
func appendMultibyte(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// readMultibyte decodes a multibyte integer at the start of b and returns
// it and its length. It refuses more than nine bytes, a truncated value
// and a last byte of zero after the first (the spec's rules).
func readMultibyte(b []byte) (uint64, int, error) {
	var v uint64
	for i := 0; i < len(b) && i < 9; i++ {
		v |= uint64(b[i]&0x7F) << (7 * i)
		if b[i]&0x80 == 0 {
			if i > 0 && b[i] == 0 {
				return 0, 0, errors.New("xz multibyte integer is not in its shortest form")
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, errors.New("xz multibyte integer is truncated or longer than nine bytes")
}

// xzIndex returns the index of a stream of blocks: indicator, number of
// records, one record (unpadded and uncompressed size) per block, padding
// and CRC32.
func xzIndex(blocks []XZBlock) []byte {
	ix := appendMultibyte([]byte{0x00}, uint64(len(blocks)))
	for _, b := range blocks {
		ix = appendMultibyte(ix, uint64(b.UnpaddedSize))
		ix = appendMultibyte(ix, uint64(b.UncompressedSize))
	}
	for len(ix)%4 != 0 {
		ix = append(ix, 0)
	}
	return binary.LittleEndian.AppendUint32(ix, crc32.ChecksumIEEE(ix))
}

// xzStreamHeader returns the 12 bytes that open a stream.
func xzStreamHeader() []byte {
	h := append(append([]byte{}, xzMagic...), xzFlags...)
	return binary.LittleEndian.AppendUint32(h, crc32.ChecksumIEEE(xzFlags))
}

// xzStreamFooter returns the 12 bytes that close a stream whose index is
// indexSize bytes.
func xzStreamFooter(indexSize int) []byte {
	tail := binary.LittleEndian.AppendUint32(nil, uint32(indexSize/4-1))
	tail = append(tail, xzFlags...)
	f := binary.LittleEndian.AppendUint32(nil, crc32.ChecksumIEEE(tail))
	return append(append(f, tail...), xzFooterMagic...)
}

// xzOneBlock returns the only block of stream, a whole .xz stream of one
// block as xz(1) writes it, read by the stream's own index and footer; the
// block must hold want bytes uncompressed.
func xzOneBlock(stream []byte, want int64) (XZBlock, error) {
	bad := func(what string) (XZBlock, error) {
		return XZBlock{}, fmt.Errorf("xz output of %d bytes is not one stream of one block: %s", len(stream), what)
	}
	if len(stream) < 24 || !bytes.Equal(stream[:6], xzMagic) {
		return bad("no stream header")
	}
	if !bytes.Equal(stream[6:8], xzFlags) || binary.LittleEndian.Uint32(stream[8:12]) != crc32.ChecksumIEEE(stream[6:8]) {
		return bad("stream flags are not CRC64 or their CRC32 does not match")
	}
	foot := stream[len(stream)-12:]
	if !bytes.Equal(foot[10:], xzFooterMagic) || !bytes.Equal(foot[8:10], xzFlags) ||
		binary.LittleEndian.Uint32(foot[:4]) != crc32.ChecksumIEEE(foot[4:10]) {
		return bad("stream footer")
	}
	indexSize := (int(binary.LittleEndian.Uint32(foot[4:8])) + 1) * 4
	indexAt := len(stream) - 12 - indexSize
	if indexAt < 12 {
		return bad("index larger than the stream")
	}
	ix := stream[indexAt : len(stream)-12]
	if ix[0] != 0x00 || binary.LittleEndian.Uint32(ix[indexSize-4:]) != crc32.ChecksumIEEE(ix[:indexSize-4]) {
		return bad("index indicator or CRC32")
	}
	var vals [3]uint64
	at := 1
	for i := range vals {
		v, n, err := readMultibyte(ix[at : indexSize-4])
		if err != nil {
			return bad(err.Error())
		}
		vals[i], at = v, at+n
	}
	if vals[0] != 1 {
		return bad(fmt.Sprintf("%d blocks", vals[0]))
	}
	b := XZBlock{Data: stream[12:indexAt], UnpaddedSize: int64(vals[1]), UncompressedSize: int64(vals[2])}
	if err := b.check(); err != nil {
		return bad(err.Error())
	}
	if b.UncompressedSize != want {
		return bad(fmt.Sprintf("the block holds %d bytes, not %d", b.UncompressedSize, want))
	}
	return b, nil
}

// check says whether b's sizes agree with its data.
func (b XZBlock) check() error {
	if len(b.Data) < 8 || int64(len(b.Data)) != (b.UnpaddedSize+3)&^3 {
		return fmt.Errorf("block of %d bytes has an unpadded size of %d", len(b.Data), b.UnpaddedSize)
	}
	if hs := (int(b.Data[0]) + 1) * 4; b.Data[0] == 0 || int64(hs)+8 > b.UnpaddedSize {
		return fmt.Errorf("block header of %d bytes does not fit a block of %d", hs, b.UnpaddedSize)
	}
	return nil
}

// xzBlockWriter writes an .xz stream of blocks into w: the index text is
// written to it, and cut at the stanza boundaries stanzaEnd picks. Chunks
// the cache does not have are compressed by up to one xz(1) per CPU at
// once while the text goes on; the blocks are written in order.
type xzBlockWriter struct {
	w       io.Writer
	size    int
	cache   XZBlockCache
	chunk   []byte
	over    int        // stanzas in chunk past the size
	pending []*xzChunk // chunks not written yet, in order
	blocks  []XZBlock  // sizes only: the data went to w
	closed  bool
	ctx     context.Context
	stop    context.CancelFunc // kills the xz processes still running
}

// xzChunk is one chunk on its way to w: block is set, or done is closed
// once a goroutine compressed the chunk into block (or err).
type xzChunk struct {
	sum      [sha256.Size]byte
	done     chan struct{}
	block    XZBlock
	err      error
	compress bool // compressed here: to be kept in the cache
}

func newXZBlockWriter(w io.Writer, size int, cache XZBlockCache) (*xzBlockWriter, error) {
	if _, err := w.Write(xzStreamHeader()); err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	return &xzBlockWriter{w: w, size: size, cache: cache, ctx: ctx, stop: stop}, nil
}

func (x *xzBlockWriter) Write(p []byte) (int, error) {
	x.chunk = append(x.chunk, p...)
	return len(p), nil
}

// stanzaEnd is called after each stanza is written: it ends the chunk
// there when the chunk is large enough and the stanza picks a cut.
func (x *xzBlockWriter) stanzaEnd(stanza []byte) error {
	if len(x.chunk) < x.size {
		return nil
	}
	if x.over++; x.over < xzMaxOver {
		sum := sha256.Sum256([]byte(stanzaField(stanza, "Package")))
		if sum[0]%xzCutOdds != 0 {
			return nil
		}
	}
	return x.cut()
}

// cut ends the chunk so far: its block comes from the cache, or from xz(1)
// started on it now.
func (x *xzBlockWriter) cut() error {
	if len(x.chunk) == 0 {
		return nil
	}
	c := &xzChunk{sum: sha256.Sum256(x.chunk), done: make(chan struct{})}
	ok := false
	if x.cache != nil {
		c.block, ok = x.cache.Block(c.sum)
		ok = ok && c.block.UncompressedSize == int64(len(x.chunk)) && c.block.check() == nil
	}
	if ok {
		close(c.done)
		x.chunk = x.chunk[:0]
	} else {
		c.compress = true
		data := x.chunk
		x.chunk = make([]byte, 0, x.size+x.size/8) // the goroutine owns data
		go func() {
			defer close(c.done)
			stream, err := xzCompress(x.ctx, data)
			if err == nil {
				c.block, err = xzOneBlock(stream, int64(len(data)))
			}
			c.err = err
		}()
	}
	x.over = 0
	x.pending = append(x.pending, c)
	// Write what is done; wait while as many xz run as there are CPUs.
	for len(x.pending) > 0 {
		select {
		case <-x.pending[0].done:
		default:
			if len(x.pending) <= runtime.NumCPU() {
				return nil
			}
		}
		if err := x.writeFirst(); err != nil {
			return err
		}
	}
	return nil
}

// writeFirst waits for the first pending chunk and writes its block.
func (x *xzBlockWriter) writeFirst() error {
	c := x.pending[0]
	<-c.done
	x.pending = x.pending[1:]
	if c.err != nil {
		return c.err
	}
	if c.compress && x.cache != nil {
		if err := x.cache.Put(c.sum, c.block); err != nil {
			return fmt.Errorf("keep xz block: %w", err)
		}
	}
	if _, err := x.w.Write(c.block.Data); err != nil {
		return err
	}
	x.blocks = append(x.blocks, XZBlock{UnpaddedSize: c.block.UnpaddedSize, UncompressedSize: c.block.UncompressedSize})
	return nil
}

// Close writes the last blocks, the index and the footer.
func (x *xzBlockWriter) Close() error {
	if x.closed {
		return nil
	}
	x.closed = true
	err := x.cut()
	for err == nil && len(x.pending) > 0 {
		err = x.writeFirst()
	}
	if err != nil {
		x.abort()
		return err
	}
	x.stop()
	ix := xzIndex(x.blocks)
	if _, err := x.w.Write(ix); err != nil {
		return err
	}
	_, err = x.w.Write(xzStreamFooter(len(ix)))
	return err
}

// abort kills the xz processes still running, waits for them, and writes
// nothing more.
func (x *xzBlockWriter) abort() {
	x.closed = true
	x.stop()
	for _, c := range x.pending {
		<-c.done
	}
	x.pending = nil
}
