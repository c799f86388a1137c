package rpm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
)

// Sizes and limits of the on-disk format.
const (
	leadSize       = 96
	headerIntro    = 16 // magic (4), reserved (4), index count (4), store size (4)
	indexEntrySize = 16
	// maxIndexEntries bounds the tags of one header; real packages have a
	// few hundred at most.
	maxIndexEntries = 1 << 16
	// maxStoreSize bounds a header's data store. rpm itself allows 256 MiB;
	// the largest real packages (kernel sources) stay well below 64 MiB.
	maxStoreSize = 64 << 20
)

// Magic numbers of the lead and of a header (with its reserved bytes).
const (
	leadMagic   = "\xed\xab\xee\xdb"
	headerMagic = "\x8e\xad\xe8\x01\x00\x00\x00\x00"
)

// Header data types.
const (
	typeNull        = 0
	typeChar        = 1
	typeInt8        = 2
	typeInt16       = 3
	typeInt32       = 4
	typeInt64       = 5
	typeString      = 6
	typeBin         = 7
	typeStringArray = 8
	typeI18NString  = 9
)

// Region tags, which mark the signed part of a header.
const (
	tagHeaderImage      = 61
	tagHeaderSignatures = 62
	tagHeaderImmutable  = 63
)

// indexEntry is one entry of a header's index.
type indexEntry struct {
	Tag    uint32
	Type   uint32
	Offset int32
	Count  uint32
}

// header is a parsed header: its raw bytes and its index, checked so that
// every entry's data lies within the store.
type header struct {
	raw     []byte // intro + index + store, exactly as in the file
	entries []indexEntry
	store   []byte
	byTag   map[uint32]int
}

// readHeader reads the header that starts at off in r; limit is the number of
// bytes available from off.
func readHeader(r io.ReaderAt, off, limit int64, what string) (*header, error) {
	var intro [headerIntro]byte
	if limit < headerIntro {
		return nil, fmt.Errorf("%s at offset %d: file ends before the header: %w", what, off, ErrInvalid)
	}
	if _, err := r.ReadAt(intro[:], off); err != nil {
		return nil, fmt.Errorf("%s at offset %d: read: %w", what, off, err)
	}
	if string(intro[:8]) != headerMagic {
		return nil, fmt.Errorf("%s at offset %d: bad magic %x (want %x): %w", what, off, intro[:8], []byte(headerMagic), ErrInvalid)
	}
	il := binary.BigEndian.Uint32(intro[8:12])
	dl := binary.BigEndian.Uint32(intro[12:16])
	if il == 0 || il > maxIndexEntries {
		return nil, fmt.Errorf("%s at offset %d: %d index entries (want 1 to %d): %w", what, off, il, maxIndexEntries, ErrInvalid)
	}
	if dl > maxStoreSize {
		return nil, fmt.Errorf("%s at offset %d: data store of %d bytes exceeds the limit of %d: %w", what, off, dl, maxStoreSize, ErrInvalid)
	}
	total := int64(headerIntro) + int64(il)*indexEntrySize + int64(dl)
	if total > limit {
		return nil, fmt.Errorf("%s at offset %d: header of %d bytes but only %d bytes left in the file (truncated?): %w", what, off, total, limit, ErrInvalid)
	}
	raw := make([]byte, total)
	if _, err := r.ReadAt(raw, off); err != nil {
		return nil, fmt.Errorf("%s at offset %d: read: %w", what, off, err)
	}
	return parseHeader(raw, il, dl, what)
}

func parseHeader(raw []byte, il, dl uint32, what string) (*header, error) {
	h := &header{
		raw:     raw,
		entries: make([]indexEntry, il),
		store:   raw[headerIntro+int(il)*indexEntrySize:],
		byTag:   make(map[uint32]int, il),
	}
	idx := raw[headerIntro:]
	end := 0
	for i := range h.entries {
		b := idx[i*indexEntrySize:]
		e := indexEntry{
			Tag:    binary.BigEndian.Uint32(b[0:4]),
			Type:   binary.BigEndian.Uint32(b[4:8]),
			Offset: int32(binary.BigEndian.Uint32(b[8:12])),
			Count:  binary.BigEndian.Uint32(b[12:16]),
		}
		if e.Type > typeI18NString {
			return nil, fmt.Errorf("%s: tag %d has unknown type %d: %w", what, e.Tag, e.Type, ErrInvalid)
		}
		if e.Offset < 0 || uint32(e.Offset) > dl {
			return nil, fmt.Errorf("%s: tag %d has data offset %d outside the %d-byte store: %w", what, e.Tag, e.Offset, dl, ErrInvalid)
		}
		if e.Count == 0 || e.Count > maxStoreSize {
			return nil, fmt.Errorf("%s: tag %d has count %d: %w", what, e.Tag, e.Count, ErrInvalid)
		}
		n, err := dataLen(e, h.store)
		if err != nil {
			return nil, fmt.Errorf("%s: tag %d: %w", what, e.Tag, err)
		}
		// As rpm requires, the data of the entries after the region tag
		// follow each other without overlapping; this also keeps the
		// work of checking a header linear in its size.
		if i == 0 && (e.Tag == tagHeaderImage || e.Tag == tagHeaderSignatures || e.Tag == tagHeaderImmutable) {
			// The region trailer is checked by its own rules.
		} else {
			if int(e.Offset) < end {
				return nil, fmt.Errorf("%s: data of tag %d at store offset %d overlaps the previous tag's, which ends at %d: %w", what, e.Tag, e.Offset, end, ErrInvalid)
			}
			end = int(e.Offset) + n
		}
		if _, dup := h.byTag[e.Tag]; !dup {
			h.byTag[e.Tag] = i
		}
		h.entries[i] = e
	}
	return h, nil
}

// dataLen returns the number of store bytes taken by e's data, checking that
// they lie inside store.
func dataLen(e indexEntry, store []byte) (int, error) {
	off := int(e.Offset)
	n := int(e.Count)
	var size int
	switch e.Type {
	case typeNull:
		return 0, nil
	case typeChar, typeInt8, typeBin:
		size = n
	case typeInt16:
		size = 2 * n
	case typeInt32:
		size = 4 * n
	case typeInt64:
		size = 8 * n
	case typeString:
		if n != 1 {
			return 0, fmt.Errorf("string with count %d: %w", n, ErrInvalid)
		}
		fallthrough
	case typeStringArray, typeI18NString:
		p := off
		for range n {
			i := bytes.IndexByte(store[min(p, len(store)):], 0)
			if i < 0 {
				return 0, fmt.Errorf("unterminated string at store offset %d: %w", p, ErrInvalid)
			}
			p += i + 1
		}
		return p - off, nil
	}
	if off+size > len(store) || size < 0 {
		return 0, fmt.Errorf("%d bytes of data at store offset %d run past the %d-byte store: %w", size, off, len(store), ErrInvalid)
	}
	return size, nil
}

func (h *header) entry(tag uint32) (indexEntry, bool) {
	i, ok := h.byTag[tag]
	if !ok {
		return indexEntry{}, false
	}
	return h.entries[i], true
}

// strings returns the strings of a STRING, STRING_ARRAY or I18NSTRING tag.
func (h *header) strings(tag uint32) []string {
	e, ok := h.entry(tag)
	if !ok || (e.Type != typeString && e.Type != typeStringArray && e.Type != typeI18NString) {
		return nil
	}
	out := make([]string, 0, e.Count)
	p := int(e.Offset)
	for range e.Count {
		i := bytes.IndexByte(h.store[p:], 0)
		out = append(out, string(h.store[p:p+i]))
		p += i + 1
	}
	return out
}

// string returns the first string of a tag (the untranslated one for
// I18NSTRING).
func (h *header) string(tag uint32) string {
	e, ok := h.entry(tag)
	if !ok || (e.Type != typeString && e.Type != typeStringArray && e.Type != typeI18NString) {
		return ""
	}
	p := int(e.Offset)
	i := bytes.IndexByte(h.store[p:], 0)
	return string(h.store[p : p+i])
}

// ints returns the values of an integer tag of any width as int64 (INT32
// and smaller are unsigned in rpm).
func (h *header) ints(tag uint32) []int64 {
	e, ok := h.entry(tag)
	if !ok {
		return nil
	}
	p := int(e.Offset)
	out := make([]int64, e.Count)
	for i := range out {
		switch e.Type {
		case typeChar, typeInt8:
			out[i] = int64(h.store[p+i])
		case typeInt16:
			out[i] = int64(binary.BigEndian.Uint16(h.store[p+2*i:]))
		case typeInt32:
			out[i] = int64(binary.BigEndian.Uint32(h.store[p+4*i:]))
		case typeInt64:
			out[i] = int64(binary.BigEndian.Uint64(h.store[p+8*i:]))
		default:
			return nil
		}
	}
	return out
}

// int returns the first value of an integer tag and whether it was present.
func (h *header) int(tag uint32) (int64, bool) {
	v := h.ints(tag)
	if len(v) == 0 {
		return 0, false
	}
	return v[0], true
}

// bin returns the bytes of a BIN tag.
func (h *header) bin(tag uint32) []byte {
	e, ok := h.entry(tag)
	if !ok || e.Type != typeBin {
		return nil
	}
	return h.store[e.Offset : int(e.Offset)+int(e.Count)]
}

// tagValue is one tag to write: its type, count and encoded data.
type tagValue struct {
	Tag   uint32
	Type  uint32
	Count uint32
	Data  []byte
}

// values returns every entry of h except the region tag, with its data
// copied out, so that a changed header can be built from them.
func (h *header) values() []tagValue {
	out := make([]tagValue, 0, len(h.entries))
	for _, e := range h.entries {
		if e.Tag == tagHeaderSignatures || e.Tag == tagHeaderImmutable || e.Tag == tagHeaderImage {
			continue
		}
		n, _ := dataLen(e, h.store) // checked by parseHeader
		out = append(out, tagValue{Tag: e.Tag, Type: e.Type, Count: e.Count, Data: bytes.Clone(h.store[e.Offset : int(e.Offset)+n])})
	}
	return out
}

func alignment(typ uint32) int {
	switch typ {
	case typeInt16:
		return 2
	case typeInt32:
		return 4
	case typeInt64:
		return 8
	}
	return 1
}

// buildHeader encodes a header whose entries are vals, sorted by tag, inside
// one region marked by regionTag, as rpm writes them: the region entry comes
// first and its trailer closes the data store.
func buildHeader(regionTag uint32, vals []tagValue) []byte {
	vals = append([]tagValue(nil), vals...)
	sort.SliceStable(vals, func(i, j int) bool { return vals[i].Tag < vals[j].Tag })
	il := len(vals) + 1
	var store bytes.Buffer
	index := make([]byte, 0, il*indexEntrySize)
	put := func(tag, typ uint32, off int32, count uint32) {
		index = binary.BigEndian.AppendUint32(index, tag)
		index = binary.BigEndian.AppendUint32(index, typ)
		index = binary.BigEndian.AppendUint32(index, uint32(off))
		index = binary.BigEndian.AppendUint32(index, count)
	}
	put(regionTag, typeBin, 0, 16) // offset patched below
	for _, v := range vals {
		if a := alignment(v.Type); store.Len()%a != 0 {
			store.Write(make([]byte, a-store.Len()%a))
		}
		put(v.Tag, v.Type, int32(store.Len()), v.Count)
		store.Write(v.Data)
	}
	trailerOff := store.Len()
	binary.BigEndian.PutUint32(index[8:12], uint32(trailerOff))
	var trailer [16]byte
	binary.BigEndian.PutUint32(trailer[0:4], regionTag)
	binary.BigEndian.PutUint32(trailer[4:8], typeBin)
	binary.BigEndian.PutUint32(trailer[8:12], uint32(-int32(il*indexEntrySize)))
	binary.BigEndian.PutUint32(trailer[12:16], 16)
	store.Write(trailer[:])

	out := make([]byte, 0, headerIntro+len(index)+store.Len())
	out = append(out, headerMagic...)
	out = binary.BigEndian.AppendUint32(out, uint32(il))
	out = binary.BigEndian.AppendUint32(out, uint32(store.Len()))
	out = append(out, index...)
	return append(out, store.Bytes()...)
}

// sigPadding returns the zero bytes that follow a signature header of n
// bytes so that the main header starts on an 8-byte boundary.
func sigPadding(n int64) int64 { return (8 - n%8) % 8 }

func stringValue(tag uint32, s string) tagValue {
	return tagValue{Tag: tag, Type: typeString, Count: 1, Data: append([]byte(s), 0)}
}

func binValue(tag uint32, b []byte) tagValue {
	return tagValue{Tag: tag, Type: typeBin, Count: uint32(len(b)), Data: b}
}

func int32Value(tag uint32, v uint32) tagValue {
	return tagValue{Tag: tag, Type: typeInt32, Count: 1, Data: binary.BigEndian.AppendUint32(nil, v)}
}

func int64Value(tag uint32, v uint64) tagValue {
	return tagValue{Tag: tag, Type: typeInt64, Count: 1, Data: binary.BigEndian.AppendUint64(nil, v)}
}
