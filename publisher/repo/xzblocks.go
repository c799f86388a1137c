package repo

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/publisher/deb"
)

// xzBlocksDir, below the root, keeps the compressed blocks of the .xz
// indexes of repositories with xz_block_size (see deb.XZBlockCache):
//
//	xzblocks/blocks/ab/abcdef…   a block, by the sha256 of its uncompressed chunk
//	xzblocks/used/<sha256>       the blocks the latest publish of one
//	                             published directory used (first line: the
//	                             directory below the root)
//
// A block file is the sha256 of the rest, then the block's unpadded and
// uncompressed sizes (uvarints) and the block: a block whose bytes changed
// on disk is not used but compressed again. After each publish that used
// the cache, blocks no used list names are removed, and used lists whose
// directory is gone (a removed repository or snapshot) with them.
const xzBlocksDir = "xzblocks"

// xzBlockCache is the on-disk deb.XZBlockCache of one publish.
type xzBlockCache struct {
	dir  string
	log  hclog.Logger
	used map[[sha256.Size]byte]bool
	// Counts for the log.
	reused, compressed, corrupt int
}

func (s *Store) xzBlockCache() *xzBlockCache {
	return &xzBlockCache{dir: filepath.Join(s.root, xzBlocksDir), log: s.log, used: map[[sha256.Size]byte]bool{}}
}

func (c *xzBlockCache) path(sum [sha256.Size]byte) string {
	h := hex.EncodeToString(sum[:])
	return filepath.Join(c.dir, "blocks", h[:2], h)
}

// Block returns the block of the chunk with sha256 sum when it is kept and
// its recorded sha256 matches.
func (c *xzBlockCache) Block(sum [sha256.Size]byte) (deb.XZBlock, bool) {
	p := c.path(sum)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return deb.XZBlock{}, false
	}
	b := deb.XZBlock{}
	if err == nil {
		b, err = decodeXZBlock(data)
	}
	if err != nil {
		c.corrupt++
		c.log.Warn("cached xz block unusable, compressing its chunk again", "path", p, "error", err)
		return deb.XZBlock{}, false
	}
	c.used[sum] = true
	c.reused++
	return b, true
}

// Put keeps b as the block of the chunk with sha256 sum.
func (c *xzBlockCache) Put(sum [sha256.Size]byte, b deb.XZBlock) error {
	p := c.path(sum)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, encodeXZBlock(b), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	c.used[sum] = true
	c.compressed++
	return nil
}

func encodeXZBlock(b deb.XZBlock) []byte {
	rest := binary.AppendUvarint(nil, uint64(b.UnpaddedSize))
	rest = binary.AppendUvarint(rest, uint64(b.UncompressedSize))
	rest = append(rest, b.Data...)
	sum := sha256.Sum256(rest)
	return append(sum[:], rest...)
}

func decodeXZBlock(data []byte) (deb.XZBlock, error) {
	if len(data) < sha256.Size {
		return deb.XZBlock{}, fmt.Errorf("%d bytes", len(data))
	}
	rest := data[sha256.Size:]
	if sum := sha256.Sum256(rest); !bytes.Equal(sum[:], data[:sha256.Size]) {
		return deb.XZBlock{}, fmt.Errorf("sha256 %x, recorded %x", sum, data[:sha256.Size])
	}
	unpadded, n := binary.Uvarint(rest)
	if n <= 0 {
		return deb.XZBlock{}, errors.New("no unpadded size")
	}
	uncompressed, m := binary.Uvarint(rest[n:])
	if m <= 0 {
		return deb.XZBlock{}, errors.New("no uncompressed size")
	}
	return deb.XZBlock{Data: rest[n+m:], UnpaddedSize: int64(unpadded), UncompressedSize: int64(uncompressed)}, nil
}

// usedList returns the path of the used list of published directory dir
// and dir below the root.
func (c *xzBlockCache) usedList(root, dir string) (string, string, error) {
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return "", "", err
	}
	rel = filepath.ToSlash(rel)
	key := sha256.Sum256([]byte(rel))
	return filepath.Join(c.dir, "used", hex.EncodeToString(key[:])), rel, nil
}

// commit records the blocks this publish used as those of published
// directory dir, then removes the blocks that no directory's latest
// publish used.
func (c *xzBlockCache) commit(root, dir string) error {
	p, rel, err := c.usedList(root, dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	var list strings.Builder
	list.WriteString(rel + "\n")
	sums := make([]string, 0, len(c.used))
	for sum := range c.used {
		sums = append(sums, hex.EncodeToString(sum[:]))
	}
	slices.Sort(sums)
	for _, s := range sums {
		list.WriteString(s + "\n")
	}
	if err := os.WriteFile(p+".tmp", []byte(list.String()), 0o644); err != nil {
		return err
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return err
	}
	return c.collect(root)
}

// drop forgets the blocks of dir, published now without blocks, and
// removes those no other directory uses.
func (c *xzBlockCache) drop(root, dir string) error {
	p, _, err := c.usedList(root, dir)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return c.collect(root)
}

// collect removes the blocks that no used list names, and the used lists
// whose directory is gone.
func (c *xzBlockCache) collect(root string) error {
	usedDir := filepath.Join(c.dir, "used")

	keep := map[string]bool{}
	lists, err := os.ReadDir(usedDir)
	if err != nil {
		return err
	}
	for _, e := range lists {
		lp := filepath.Join(usedDir, e.Name())
		if strings.HasSuffix(e.Name(), ".tmp") {
			_ = os.Remove(lp)
			continue
		}
		f, err := os.Open(lp)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		first := true
		for sc.Scan() {
			if first {
				first = false
				if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(sc.Text()))); errors.Is(err, fs.ErrNotExist) {
					f.Close()
					if err := os.Remove(lp); err != nil {
						return err
					}
					break
				}
				continue
			}
			keep[sc.Text()] = true
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", lp, err)
		}
	}
	blocks, err := filepath.Glob(filepath.Join(c.dir, "blocks", "*", "*"))
	if err != nil {
		return err
	}
	removed := 0
	for _, b := range blocks {
		if !keep[filepath.Base(b)] {
			if err := os.Remove(b); err != nil {
				return err
			}
			removed++
		}
	}
	c.log.Info("xz blocks", "reused", c.reused, "compressed", c.compressed, "corrupt", c.corrupt, "removed", removed)
	return nil
}
