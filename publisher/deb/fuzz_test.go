package deb_test

import (
	"strings"
	"testing"

	"github.com/kiln-build/kiln/publisher/deb"
)

// FuzzParseDSC feeds ParseDSC uploads it has never seen. Whatever it
// accepts must be safe to publish: a valid source name and version, plain
// file names, and a Sources stanza that reads back as one stanza of the
// same package.
func FuzzParseDSC(f *testing.F) {
	base := strings.Replace(dscText, "- -dash-escaped: no\n", "", 1)
	f.Add("hello_2.10-3.dsc", base)
	f.Add("hello_2.10-3.dsc", dscText)
	f.Add("hello_2.10-3.dsc", base[strings.Index(base, "Format:"):strings.Index(base, "-----BEGIN PGP SIGNATURE")])
	f.Add("hello.dsc", strings.Replace(base, " hello_2.10.orig.tar.gz", " ../../../etc/shadow", 3))
	f.Add("hello.dsc", strings.Replace(base, "Standards-Version: 4.6.2\n", "Standards-Version: 4.6.2\n\nSource: evil\n", 1))
	f.Add("hello.dsc", strings.Replace(base, "Standards-Version: 4.6.2\n", "Description: one\n second\n .\n", 1))
	f.Fuzz(func(t *testing.T, name, text string) {
		s, err := deb.ParseDSC(name, []byte(text), deb.Checksums{Size: 1})
		if err != nil {
			return
		}
		if err := deb.CheckName("source", s.Name); err != nil {
			t.Fatalf("accepted source name: %v", err)
		}
		if err := deb.CheckVersion(s.Version); err != nil {
			t.Fatalf("accepted version: %v", err)
		}
		if err := deb.CheckFileName(s.DSC.Name); err != nil {
			t.Fatalf("accepted .dsc name: %v", err)
		}
		for _, file := range s.Files {
			if err := deb.CheckFileName(file.Name); err != nil {
				t.Fatalf("accepted file: %v", err)
			}
		}
		stanza := deb.SourcesStanza(s, "pool/main/h/"+s.Name)
		p, err := deb.ParseControl(stanza)
		if err != nil {
			t.Fatalf("Sources stanza of an accepted .dsc does not read back: %v\n%s", err, stanza)
		}
		if p.Get("Package") != s.Name || p.Get("Version") != s.Version {
			t.Fatalf("Sources stanza reads back as %s %s, want %s %s", p.Get("Package"), p.Get("Version"), s.Name, s.Version)
		}
	})
}
