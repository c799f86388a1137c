// Package debtest builds small .deb files in memory for tests and
// benchmarks, including deliberately malformed ones.
package debtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"strconv"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Options shape the package.
type Options struct {
	// Compression of control.tar and data.tar: "gz" (default), "xz", "zst".
	Compression string
	// NoData leaves out the data member.
	NoData bool
	// Payload is the content of /usr/share/doc/<pkg>/payload in data.tar.
	Payload []byte
	// ExtraFiles adds that many empty files to data.tar.
	ExtraFiles int
}

// Build returns a .deb whose control file is control (written verbatim).
func Build(control string, o Options) ([]byte, error) {
	if o.Compression == "" {
		o.Compression = "gz"
	}
	ctl, err := tarball(o.Compression, map[string][]byte{"./control": []byte(control)})
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString("!<arch>\n")
	member(&b, "debian-binary", []byte("2.0\n"))
	member(&b, "control.tar."+o.Compression, ctl)
	if !o.NoData {
		files := map[string][]byte{"./usr/share/doc/kiln-test/payload": o.Payload}
		for i := range o.ExtraFiles {
			files[fmt.Sprintf("./usr/share/kiln-test/f%d", i)] = nil
		}
		data, err := tarball(o.Compression, files)
		if err != nil {
			return nil, err
		}
		member(&b, "data.tar."+o.Compression, data)
	}
	return b.Bytes(), nil
}

// Control returns a minimal control file.
func Control(name, version, arch string) string {
	return fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: Kiln Tests <tests@kiln.invalid>\nInstalled-Size: 1\nSection: misc\nPriority: optional\nDescription: test package %s\n generated for Kiln's tests.\n", name, version, arch, name)
}

func member(b *bytes.Buffer, name string, data []byte) {
	hdr := fmt.Sprintf("%-16s%-12s%-6s%-6s%-8s%-10s`\n", name, "0", "0", "0", "100644", strconv.Itoa(len(data)))
	b.WriteString(hdr)
	b.Write(data)
	if len(data)%2 == 1 {
		b.WriteByte('\n')
	}
}

func tarball(comp string, files map[string][]byte) ([]byte, error) {
	var t bytes.Buffer
	tw := tar.NewWriter(&t)
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	switch comp {
	case "gz":
		w := gzip.NewWriter(&out)
		_, _ = w.Write(t.Bytes())
		if err := w.Close(); err != nil {
			return nil, err
		}
	case "xz":
		w, err := xz.NewWriter(&out)
		if err != nil {
			return nil, err
		}
		_, _ = w.Write(t.Bytes())
		if err := w.Close(); err != nil {
			return nil, err
		}
	case "zst":
		w, err := zstd.NewWriter(&out)
		if err != nil {
			return nil, err
		}
		_, _ = w.Write(t.Bytes())
		if err := w.Close(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown compression %q", comp)
	}
	return out.Bytes(), nil
}
