package archive_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/publisher/deb/archive"
)

func ar(members ...[2]string) []byte {
	var b bytes.Buffer
	b.WriteString("!<arch>\n")
	for _, m := range members {
		fmt.Fprintf(&b, "%-16s%-12s%-6s%-6s%-8s%-10d`\n", m[0], "0", "0", "0", "100644", len(m[1]))
		b.WriteString(m[1])
		if len(m[1])%2 == 1 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func readAll(data []byte, max int64) ([]string, error) {
	r := archive.NewArReader(bytes.NewReader(data), max)
	var out []string
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return out, err
		}
		out = append(out, h.Name+"="+string(b))
	}
}

func TestArReader(t *testing.T) {
	t.Parallel()
	good := ar([2]string{"debian-binary", "2.0\n"}, [2]string{"odd/", "abc"}, [2]string{"even", "abcd"})
	cases := []struct {
		name    string
		data    []byte
		max     int64
		want    string
		wantErr string
	}{
		{name: "members with padding", data: good, want: "debian-binary=2.0\n|odd=abc|even=abcd"},
		{name: "empty archive", data: []byte("!<arch>\n"), want: ""},
		{name: "bad magic", data: []byte("!<arch>X"), wantErr: "not an ar archive"},
		{name: "short magic", data: []byte("!<ar"), wantErr: "no ar signature"},
		{name: "truncated member", data: good[:len(good)-3], wantErr: "truncated"},
		{name: "truncated header", data: good[:8+30], wantErr: "truncated member header"},
		{name: "oversized member", data: good, max: 3, wantErr: "more than the limit of 3"},
		{name: "bad size", data: []byte("!<arch>\n" + fmt.Sprintf("%-16s%-12s%-6s%-6s%-8s%-10s`\n", "x", "0", "0", "0", "1", "-5")), wantErr: "bad size"},
		{name: "bad terminator", data: []byte("!<arch>\n" + fmt.Sprintf("%-16s%-12s%-6s%-6s%-8s%-10s!\n", "x", "0", "0", "0", "1", "1")), wantErr: "terminator"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := readAll(tc.data, tc.max)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, archive.ErrFormat) {
					t.Fatalf("error = %v, want ErrFormat containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := strings.Join(got, "|"); s != tc.want {
				t.Errorf("got %q, want %q", s, tc.want)
			}
		})
	}
}

func FuzzArReader(f *testing.F) {
	f.Add(ar([2]string{"debian-binary", "2.0\n"}, [2]string{"control.tar.gz", "xyz"}))
	f.Add([]byte("!<arch>\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := readAll(data, 1<<20)
		if err != nil && !errors.Is(err, archive.ErrFormat) {
			t.Fatalf("error %v does not wrap ErrFormat", err)
		}
		total := 0
		for _, g := range got {
			total += len(g)
		}
		if total > len(data) {
			t.Fatalf("read %d bytes of members from %d bytes of input", total, len(data))
		}
	})
}
