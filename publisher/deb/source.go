package deb

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// SourceFile is one file of a source package as the .dsc lists it.
type SourceFile struct {
	Name string `json:"name"`
	Checksums
}

// Source is a source package read from a .dsc.
type Source struct {
	// Control is the .dsc stanza (without its OpenPGP armor).
	Control Paragraph `json:"control"`
	Name    string    `json:"name"`
	Version string    `json:"version"`
	// Files lists the files the .dsc names, with the checksums it gives
	// (only those it gives: the caller fills the rest from the files).
	Files []SourceFile `json:"files"`
	// DSC is the .dsc file itself.
	DSC SourceFile `json:"dsc"`
}

// ParseDSC parses a .dsc, clearsigned or not (the signature is not checked:
// the publisher signs the repository, not the upload). name is the .dsc's
// file name and sums its checksums, both kept in the result.
func ParseDSC(name string, data []byte, sums Checksums) (*Source, error) {
	if err := CheckFileName(name); err != nil {
		return nil, err
	}
	body, err := stripClearsign(data)
	if err != nil {
		return nil, err
	}
	p, err := ParseControl(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for _, f := range []string{"Directory", "Package"} {
		if p.Has(f) {
			return nil, fmt.Errorf("%w: %s: field %s is set by the repository, not by a .dsc", ErrInvalid, name, f)
		}
	}
	s := &Source{Control: p, Name: p.Get("Source"), Version: p.Get("Version"), DSC: SourceFile{Name: name, Checksums: sums}}
	if err := CheckName("source", s.Name); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := CheckVersion(s.Version); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	byName := map[string]*SourceFile{}
	var order []string
	lists := []struct {
		field string
		set   func(*SourceFile, string)
		width int
	}{
		{"Files", func(f *SourceFile, h string) { f.MD5 = h }, 32},
		{"Checksums-Sha1", func(f *SourceFile, h string) { f.SHA1 = h }, 40},
		{"Checksums-Sha256", func(f *SourceFile, h string) { f.SHA256 = h }, 64},
		{"Checksums-Sha512", func(f *SourceFile, h string) { f.SHA512 = h }, 128},
	}
	for _, l := range lists {
		v := p.Get(l.field)
		if v == "" {
			continue
		}
		for _, line := range strings.Split(v, "\n") {
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			parts := strings.Fields(line)
			if len(parts) != 3 {
				return nil, fmt.Errorf("%w: %s: %s line %q is not \"checksum size name\"", ErrInvalid, name, l.field, truncate(line))
			}
			h, sizeText, fname := parts[0], parts[1], parts[2]
			if len(h) != l.width || strings.Trim(h, "0123456789abcdef") != "" {
				return nil, fmt.Errorf("%w: %s: %s: %q is not a lower-case hex checksum", ErrInvalid, name, l.field, truncate(h))
			}
			size, err := strconv.ParseInt(sizeText, 10, 64)
			if err != nil || size < 0 {
				return nil, fmt.Errorf("%w: %s: %s: bad size %q", ErrInvalid, name, l.field, truncate(sizeText))
			}
			if err := CheckFileName(fname); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", name, l.field, err)
			}
			f, ok := byName[fname]
			if !ok {
				f = &SourceFile{Name: fname, Checksums: Checksums{Size: size}}
				byName[fname] = f
				order = append(order, fname)
			}
			if f.Size != size {
				return nil, fmt.Errorf("%w: %s: %s gives %s size %d, another list says %d", ErrInvalid, name, l.field, fname, size, f.Size)
			}
			l.set(f, h)
		}
	}
	if len(order) == 0 {
		return nil, fmt.Errorf("%w: %s lists no files", ErrInvalid, name)
	}
	for _, n := range order {
		f := byName[n]
		if f.SHA256 == "" {
			return nil, fmt.Errorf("%w: %s: %s has no Checksums-Sha256 entry; rebuild the source with a current dpkg-source", ErrInvalid, name, n)
		}
		s.Files = append(s.Files, *f)
	}
	return s, nil
}

// stripClearsign returns the signed text of a cleartext-signed message, or
// data unchanged when it is not signed.
func stripClearsign(data []byte) ([]byte, error) {
	const begin = "-----BEGIN PGP SIGNED MESSAGE-----"
	trimmed := bytes.TrimLeft(data, "\n")
	if !bytes.HasPrefix(trimmed, []byte(begin)) {
		return data, nil
	}
	lines := strings.Split(string(trimmed), "\n")
	i := 1
	for ; i < len(lines) && strings.TrimRight(lines[i], "\r") != ""; i++ {
	}
	var out []string
	for i++; i < len(lines); i++ {
		l := strings.TrimRight(lines[i], "\r")
		if l == "-----BEGIN PGP SIGNATURE-----" {
			return []byte(strings.Join(out, "\n") + "\n"), nil
		}
		out = append(out, strings.TrimPrefix(l, "- "))
	}
	return nil, fmt.Errorf("%w: signed .dsc has no signature block (truncated?)", ErrInvalid)
}
