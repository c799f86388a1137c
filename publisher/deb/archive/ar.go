// Package archive reads the container formats that packages come in: the
// common ar format of .deb files (with bounded member sizes, so a hostile
// archive cannot make a reader allocate or read without limit) and tar
// members decompressed by name suffix.
package archive

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrFormat is wrapped by every error about a malformed archive.
var ErrFormat = errors.New("malformed archive")

const (
	arMagic      = "!<arch>\n"
	arHeaderSize = 60
)

// ArHeader describes one ar member.
type ArHeader struct {
	Name string
	Size int64
}

// ArReader reads the members of a common-format ar archive in order.
type ArReader struct {
	r       *bufio.Reader
	started bool
	remain  int64 // bytes left in the current member
	pad     bool  // current member is followed by a padding byte
	maxSize int64
}

// NewArReader reads an ar archive from r. Members larger than maxMember are
// refused (0 means no limit).
func NewArReader(r io.Reader, maxMember int64) *ArReader {
	return &ArReader{r: bufio.NewReader(r), maxSize: maxMember}
}

// Next skips the rest of the current member and returns the next header;
// io.EOF at the clean end of the archive.
func (a *ArReader) Next() (*ArHeader, error) {
	if !a.started {
		a.started = true
		magic := make([]byte, len(arMagic))
		if _, err := io.ReadFull(a.r, magic); err != nil {
			return nil, fmt.Errorf("%w: no ar signature: %v", ErrFormat, err)
		}
		if string(magic) != arMagic {
			return nil, fmt.Errorf("%w: not an ar archive (signature %q)", ErrFormat, magic)
		}
	}
	if a.remain > 0 {
		if _, err := io.CopyN(io.Discard, a.r, a.remain); err != nil {
			return nil, fmt.Errorf("%w: truncated member: %v", ErrFormat, unexpected(err))
		}
		a.remain = 0
	}
	if a.pad {
		a.pad = false
		if _, err := a.r.ReadByte(); err != nil {
			return nil, fmt.Errorf("%w: truncated member padding: %v", ErrFormat, unexpected(err))
		}
	}
	var hdr [arHeaderSize]byte
	n, err := io.ReadFull(a.r, hdr[:])
	if n == 0 && errors.Is(err, io.EOF) {
		return nil, io.EOF
	}
	if err != nil {
		return nil, fmt.Errorf("%w: truncated member header: %v", ErrFormat, unexpected(err))
	}
	if hdr[58] != '`' || hdr[59] != '\n' {
		return nil, fmt.Errorf("%w: bad member header terminator", ErrFormat)
	}
	name := strings.TrimRight(string(hdr[0:16]), " ")
	name = strings.TrimSuffix(name, "/") // GNU ar style
	sizeField := strings.TrimRight(string(hdr[48:58]), " ")
	size, err := strconv.ParseInt(sizeField, 10, 64)
	if err != nil || size < 0 {
		return nil, fmt.Errorf("%w: member %q has bad size %q", ErrFormat, name, sizeField)
	}
	if a.maxSize > 0 && size > a.maxSize {
		return nil, fmt.Errorf("%w: member %q is %d bytes, more than the limit of %d", ErrFormat, name, size, a.maxSize)
	}
	if bytes.IndexFunc([]byte(name), func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
		return nil, fmt.Errorf("%w: member name %q has control characters", ErrFormat, name)
	}
	a.remain = size
	a.pad = size%2 == 1
	return &ArHeader{Name: name, Size: size}, nil
}

// Read reads from the current member.
func (a *ArReader) Read(p []byte) (int, error) {
	if a.remain <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > a.remain {
		p = p[:a.remain]
	}
	n, err := a.r.Read(p)
	a.remain -= int64(n)
	if err == io.EOF && a.remain > 0 {
		return n, fmt.Errorf("%w: truncated member: %v", ErrFormat, io.ErrUnexpectedEOF)
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
