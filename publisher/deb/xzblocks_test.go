package deb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
)

func TestMultibyteIntegers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v   uint64
		enc []byte
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{0x7F, []byte{0x7F}},
		{0x80, []byte{0x80, 0x01}},
		{300, []byte{0xAC, 0x02}},
		{0x3FFF, []byte{0xFF, 0x7F}},
		{0x4000, []byte{0x80, 0x80, 0x01}},
		{1<<63 - 1, []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}},
	} {
		if got := appendMultibyte(nil, tc.v); !bytes.Equal(got, tc.enc) {
			t.Errorf("appendMultibyte(%d) = % x, want % x", tc.v, got, tc.enc)
		}
		v, n, err := readMultibyte(append(slices.Clone(tc.enc), 0xAA))
		if err != nil || v != tc.v || n != len(tc.enc) {
			t.Errorf("readMultibyte(% x) = %d, %d, %v; want %d, %d", tc.enc, v, n, err, tc.v, len(tc.enc))
		}
	}
	for _, bad := range [][]byte{nil, {0x80}, {0xFF, 0xFF}, {0x80, 0x00}, bytes.Repeat([]byte{0x80}, 10)} {
		if v, n, err := readMultibyte(bad); err == nil {
			t.Errorf("readMultibyte(% x) = %d, %d, want an error", bad, v, n)
		}
	}
}

func FuzzMultibyte(f *testing.F) {
	for _, v := range []uint64{0, 0x7F, 0x80, 1 << 35, 1<<63 - 1} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v uint64) {
		v &= 1<<63 - 1 // the format's integers are below 2^63
		enc := appendMultibyte(nil, v)
		got, n, err := readMultibyte(enc)
		if err != nil || got != v || n != len(enc) || len(enc) > 9 {
			t.Fatalf("%d encodes as % x, reads back as %d, %d, %v", v, enc, got, n, err)
		}
	})
}

// TestXZOneStreamRebuiltIsXZs takes xz(1)'s one-block streams apart and
// puts them together again with the header, index and footer written
// here: the bytes must be xz's own.
func TestXZOneStreamRebuiltIsXZs(t *testing.T) {
	t.Parallel()
	testenv.Tool(t, "xz")
	for _, data := range [][]byte{[]byte("x"), bytes.Repeat([]byte("Package: a\nVersion: 1\n\n"), 40000), stanzaText(3000, nil)} {
		stream, err := xzCompress(context.Background(), data)
		if err != nil {
			t.Fatal(err)
		}
		b, err := xzOneBlock(stream, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		ix := xzIndex([]XZBlock{b})
		rebuilt := slices.Concat(xzStreamHeader(), b.Data, ix, xzStreamFooter(len(ix)))
		if !bytes.Equal(rebuilt, stream) {
			t.Fatalf("%d bytes: rebuilt stream of %d bytes differs from xz's %d", len(data), len(rebuilt), len(stream))
		}
		if _, err := xzOneBlock(stream, int64(len(data))+1); err == nil {
			t.Fatal("a block of the wrong uncompressed size was taken")
		}
		bad := slices.Clone(stream)
		bad[len(bad)-13] ^= 1 // the index CRC32
		if _, err := xzOneBlock(bad, int64(len(data))); err == nil {
			t.Fatal("a stream with a bad index CRC32 was taken")
		}
	}
}

// stanzaText returns n Packages-like stanzas, and after p00500 the extra
// ones.
func stanzaText(n int, extra []string) []byte {
	var b bytes.Buffer
	for _, s := range stanzas(n, extra) {
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(s)
	}
	return b.Bytes()
}

func stanzas(n int, extra []string) []string {
	var out []string
	for i := range n {
		name := fmt.Sprintf("p%05d", i)
		out = append(out, fmt.Sprintf("Package: %s\nVersion: 1.%d\nDescription: filler %s\n", name, i%97, strings.Repeat(strconv.Itoa(i*7919), i%7)))
		if name == "p00500" {
			for _, e := range extra {
				out = append(out, "Package: "+e+"\nVersion: 2\nDescription: added\n")
			}
		}
	}
	return out
}

// memCache is an XZBlockCache in memory that counts the blocks put.
type memCache struct {
	blocks map[[sha256.Size]byte]XZBlock
	puts   int
}

func (c *memCache) Block(sum [sha256.Size]byte) (XZBlock, bool) {
	b, ok := c.blocks[sum]
	return b, ok
}

func (c *memCache) Put(sum [sha256.Size]byte, b XZBlock) error {
	c.blocks[sum] = XZBlock{Data: slices.Clone(b.Data), UnpaddedSize: b.UnpaddedSize, UncompressedSize: b.UncompressedSize}
	c.puts++
	return nil
}

// writeBlocks writes the stanzas as an xz stream of blocks of size.
func writeBlocks(t *testing.T, list []string, size int, cache XZBlockCache) []byte {
	t.Helper()
	var out bytes.Buffer
	x, err := newXZBlockWriter(&out, size, cache)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range list {
		if i > 0 {
			x.Write([]byte{'\n'})
		}
		x.Write([]byte(s))
		if err := x.stanzaEnd([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// checkStream has xz(1) test and decompress stream as one stream, and
// returns its number of blocks.
func checkStream(t *testing.T, stream, want []byte) int {
	t.Helper()
	xzTool := testenv.Tool(t, "xz")
	test := exec.Command(xzTool, "--test", "--single-stream")
	test.Stdin = bytes.NewReader(stream)
	if out, err := test.CombinedOutput(); err != nil {
		t.Fatalf("xz --test --single-stream: %v %s", err, out)
	}
	dec := exec.Command(xzTool, "--decompress", "--stdout", "--single-stream")
	dec.Stdin = bytes.NewReader(stream)
	got, err := dec.Output()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("xz -d gives %d bytes (%v), want the %d written", len(got), err, len(want))
	}
	// xz --list reads files only.
	file := filepath.Join(t.TempDir(), "Packages.xz")
	if err := os.WriteFile(file, stream, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(xzTool, "--list", "--robot", file).Output()
	if err != nil {
		t.Fatalf("xz --list: %v", err)
	}
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "totals" {
			if f[1] != "1" {
				t.Fatalf("xz --list counts %s streams", f[1])
			}
			n, err := strconv.Atoi(f[2])
			if err != nil {
				t.Fatalf("xz --list: %q", line)
			}
			return n
		}
	}
	t.Fatalf("xz --list printed no totals:\n%s", out)
	return 0
}

func TestXZBlockStreamIsOneStreamOfManyBlocks(t *testing.T) {
	t.Parallel()
	cache := &memCache{blocks: map[[sha256.Size]byte]XZBlock{}}
	list := stanzas(3000, nil)
	stream := writeBlocks(t, list, 8<<10, cache)
	if n := checkStream(t, stream, stanzaText(3000, nil)); n != cache.puts {
		t.Errorf("xz --list counts %d blocks, %d were compressed", n, cache.puts)
	}
	if cache.puts < 5 {
		t.Fatalf("%d blocks of 8 KiB for %d bytes", cache.puts, len(stanzaText(3000, nil)))
	}
	first := cache.puts

	// The same stanzas again: every block from the cache, the same bytes.
	if again := writeBlocks(t, list, 8<<10, cache); !bytes.Equal(again, stream) || cache.puts != first {
		t.Fatalf("rewriting the same stanzas compressed %d blocks and changed the stream: %v", cache.puts-first, !bytes.Equal(again, stream))
	}
	// One stanza added in the middle: one or two blocks compressed.
	added := writeBlocks(t, stanzas(3000, []string{"p00500a"}), 8<<10, cache)
	checkStream(t, added, stanzaText(3000, []string{"p00500a"}))
	if n := cache.puts - first; n < 1 || n > 2 {
		t.Fatalf("adding one stanza compressed %d of %d blocks, want 1 or 2", n, first)
	}

	// A cached block whose sizes do not fit its chunk is compressed again.
	for sum, b := range cache.blocks {
		b.UncompressedSize++
		cache.blocks[sum] = b
	}
	before := cache.puts
	checkStream(t, writeBlocks(t, list, 8<<10, cache), stanzaText(3000, nil))
	if cache.puts-before != first {
		t.Fatalf("with every cached block wrong, %d of %d blocks were compressed", cache.puts-before, first)
	}
}

func TestXZBlockStreamEmptyAndWithoutCache(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ stanzas, size, blocks int }{{0, 4096, 0}, {1, 4096, 1}, {500, 1 << 20, 1}} {
		if n := checkStream(t, writeBlocks(t, stanzas(tc.stanzas, nil), tc.size, nil), stanzaText(tc.stanzas, nil)); n != tc.blocks {
			t.Errorf("%d stanzas in blocks of %d: %d blocks, want %d", tc.stanzas, tc.size, n, tc.blocks)
		}
	}
	if n := checkStream(t, writeBlocks(t, stanzas(500, nil), 1024, nil), stanzaText(500, nil)); n < 10 {
		t.Errorf("500 stanzas in blocks of 1 KiB: %d blocks", n)
	}
}
