package deb

import (
	"archive/tar"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"

	"github.com/kiln-build/kiln/publisher/deb/archive"
)

// Limits bound what a package may make the reader do.
type Limits struct {
	// MaxControlMember bounds the compressed control.tar member.
	MaxControlMember int64
	// MaxControlTar bounds the decompressed control.tar.
	MaxControlTar int64
	// MaxControlFile bounds the control file itself.
	MaxControlFile int64
}

// DefaultLimits are generous for real packages and small for attackers.
func DefaultLimits() Limits {
	return Limits{MaxControlMember: 64 << 20, MaxControlTar: 256 << 20, MaxControlFile: 1 << 20}
}

// Checksums of a file.
type Checksums struct {
	Size   int64  `json:"size"`
	MD5    string `json:"md5"`
	SHA1   string `json:"sha1"`
	SHA256 string `json:"sha256"`
	SHA512 string `json:"sha512"`
}

// Hasher computes Checksums of what is written to it.
type Hasher struct {
	n                         int64
	md5, sha1, sha256, sha512 hash.Hash
	w                         io.Writer
}

// NewHasher returns a Hasher.
func NewHasher() *Hasher {
	h := &Hasher{md5: md5.New(), sha1: sha1.New(), sha256: sha256.New(), sha512: sha512.New()}
	h.w = io.MultiWriter(h.md5, h.sha1, h.sha256, h.sha512)
	return h
}

func (h *Hasher) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	return h.w.Write(p)
}

// Sum returns the checksums so far.
func (h *Hasher) Sum() Checksums {
	return Checksums{
		Size:   h.n,
		MD5:    hex.EncodeToString(h.md5.Sum(nil)),
		SHA1:   hex.EncodeToString(h.sha1.Sum(nil)),
		SHA256: hex.EncodeToString(h.sha256.Sum(nil)),
		SHA512: hex.EncodeToString(h.sha512.Sum(nil)),
	}
}

// Binary is a binary package read from a .deb or .udeb.
type Binary struct {
	// Control is the package's control stanza as the package wrote it.
	Control Paragraph `json:"control"`
	Name    string    `json:"name"`
	Version string    `json:"version"`
	Arch    string    `json:"arch"`
	// Source is the source package name (from Source:, else Name).
	Source string `json:"source"`
	// UDeb is true for installer packages (.udeb).
	UDeb bool `json:"udeb"`
	Checksums
}

// computedFields are written by the repository and refused in packages.
var computedFields = []string{"Filename", "Size", "MD5sum", "SHA1", "SHA256", "SHA512", "Description-md5"}

// ReadBinary reads a .deb (or, with udeb, a .udeb) from r to its end: the
// control stanza from control.tar.{gz,xz,zst}, and the checksums of all of
// r. It checks that the archive is complete and has a data member.
func ReadBinary(r io.Reader, udeb bool, lim Limits) (*Binary, error) {
	h := NewHasher()
	ar := archive.NewArReader(io.TeeReader(r, h), 0)
	var control []byte
	sawData := false
	for i := 0; ; i++ {
		hdr, err := ar.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		switch {
		case i == 0:
			if hdr.Name != "debian-binary" {
				return nil, fmt.Errorf("%w: first member is %q, not debian-binary: not a Debian package", ErrInvalid, hdr.Name)
			}
			b, err := io.ReadAll(io.LimitReader(ar, 64))
			if err != nil {
				return nil, fmt.Errorf("%w: debian-binary: %v", ErrInvalid, err)
			}
			if !strings.HasPrefix(string(b), "2.") {
				return nil, fmt.Errorf("%w: package format %q is not 2.x", ErrInvalid, strings.TrimSpace(string(b)))
			}
		case strings.HasPrefix(hdr.Name, "control.tar"):
			if control != nil {
				return nil, fmt.Errorf("%w: two control members", ErrInvalid)
			}
			if hdr.Size > lim.MaxControlMember {
				return nil, fmt.Errorf("%w: %s is %d bytes, more than the limit of %d", ErrInvalid, hdr.Name, hdr.Size, lim.MaxControlMember)
			}
			control, err = readControlTar(hdr.Name, ar, lim)
			if err != nil {
				return nil, err
			}
		case strings.HasPrefix(hdr.Name, "data.tar"):
			if control == nil {
				return nil, fmt.Errorf("%w: data member before control member", ErrInvalid)
			}
			sawData = true
		case strings.HasPrefix(hdr.Name, "_"):
			// Reserved for signatures and extensions; allowed and skipped.
		default:
			return nil, fmt.Errorf("%w: unexpected member %q", ErrInvalid, hdr.Name)
		}
		// Read the member through so it is hashed (and truncation is seen).
		if _, err := io.Copy(io.Discard, ar); err != nil {
			return nil, fmt.Errorf("%w: member %s: %v", ErrInvalid, hdr.Name, err)
		}
	}
	if control == nil {
		return nil, fmt.Errorf("%w: no control.tar member", ErrInvalid)
	}
	if !sawData {
		return nil, fmt.Errorf("%w: no data.tar member (truncated package?)", ErrInvalid)
	}
	p, err := ParseControl(control)
	if err != nil {
		return nil, err
	}
	b, err := binaryFromControl(p, udeb)
	if err != nil {
		return nil, err
	}
	b.Checksums = h.Sum()
	return b, nil
}

func readControlTar(name string, r io.Reader, lim Limits) ([]byte, error) {
	dr, done, err := archive.Decompressor(name, r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	defer done()
	limited := &io.LimitedReader{R: dr, N: lim.MaxControlTar + 1}
	tr := tar.NewReader(limited)
	var control []byte
	for {
		th, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if limited.N <= 0 {
				return nil, fmt.Errorf("%w: %s decompresses to more than %d bytes", ErrInvalid, name, lim.MaxControlTar)
			}
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
		}
		if path.Clean(strings.TrimPrefix(th.Name, "./")) != "control" || th.Typeflag != tar.TypeReg {
			continue
		}
		if th.Size > lim.MaxControlFile {
			return nil, fmt.Errorf("%w: control file is %d bytes, more than the limit of %d", ErrInvalid, th.Size, lim.MaxControlFile)
		}
		if control != nil {
			return nil, fmt.Errorf("%w: %s holds two control files", ErrInvalid, name)
		}
		control, err = io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: control: %v", ErrInvalid, name, err)
		}
	}
	if limited.N <= 0 {
		return nil, fmt.Errorf("%w: %s decompresses to more than %d bytes", ErrInvalid, name, lim.MaxControlTar)
	}
	if control == nil {
		return nil, fmt.Errorf("%w: %s has no control file", ErrInvalid, name)
	}
	return control, nil
}

func binaryFromControl(p Paragraph, udeb bool) (*Binary, error) {
	for _, f := range computedFields {
		if p.Has(f) {
			return nil, fmt.Errorf("%w: control field %s is set by the repository, not by a package; remove it from debian/control", ErrInvalid, f)
		}
	}
	b := &Binary{Control: p, Name: p.Get("Package"), Version: p.Get("Version"), Arch: p.Get("Architecture"), UDeb: udeb}
	for _, f := range []Field{{"Package", b.Name}, {"Version", b.Version}, {"Architecture", b.Arch}} {
		if f.Value == "" {
			return nil, fmt.Errorf("%w: control data has no %s field", ErrInvalid, f.Name)
		}
		if strings.Contains(f.Value, "\n") {
			return nil, fmt.Errorf("%w: field %s spans several lines", ErrInvalid, f.Name)
		}
	}
	if err := CheckName("package", b.Name); err != nil {
		return nil, err
	}
	if err := CheckVersion(b.Version); err != nil {
		return nil, err
	}
	if err := CheckArch(b.Arch); err != nil {
		return nil, err
	}
	b.Source = b.Name
	if src := p.Get("Source"); src != "" {
		// "Source: name (version)" when the versions differ.
		name, _, _ := strings.Cut(src, " ")
		if strings.Contains(src, "\n") {
			return nil, fmt.Errorf("%w: field Source spans several lines", ErrInvalid)
		}
		if err := CheckName("source", name); err != nil {
			return nil, err
		}
		b.Source = name
	}
	return b, nil
}

// PoolDir returns the pool directory for a source package in component,
// e.g. pool/main/h/hello or pool/main/libh/libhello.
func PoolDir(component, source string) string {
	prefix := source[:1]
	if strings.HasPrefix(source, "lib") && len(source) > 3 {
		prefix = source[:4]
	}
	return path.Join("pool", component, prefix, source)
}

// FileName returns the canonical file name of a binary package,
// name_version_arch.deb with the epoch left out.
func (b *Binary) FileName() string {
	v := b.Version
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[i+1:]
	}
	ext := ".deb"
	if b.UDeb {
		ext = ".udeb"
	}
	return b.Name + "_" + v + "_" + b.Arch + ext
}
