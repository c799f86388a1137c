package rpm

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/kiln-build/kiln/internal/testenv"
)

// specTemplate is a small package that exercises the fields repodata needs:
// epoch, dependencies of every kind, a directory, a config file, a ghost
// file and a changelog. %s are name, version and release.
const specTemplate = `Name: %s
Version: %s
Release: %s
Epoch: 1
Summary: Hello for tests
License: MIT
URL: https://example.org/hello
Group: Applications/Test
Vendor: Kiln
Packager: Kiln Test <test@example.org>
BuildArch: noarch
Requires: bash >= 4.0
Requires(pre): coreutils
Provides: hello-virtual = 2.0
Conflicts: evil < 1.0
Obsoletes: old-hello <= 1.0
Recommends: hello-docs
%%description
Hello, a package made by the tests.
Second line & <xml> chars.
%%install
mkdir -p %%{buildroot}/usr/bin %%{buildroot}/etc/hello %%{buildroot}/var/log
printf '#!/bin/sh\necho hello\n' > %%{buildroot}/usr/bin/hello
chmod 755 %%{buildroot}/usr/bin/hello
echo conf > %%{buildroot}/etc/hello/hello.conf
%%files
/usr/bin/hello
%%dir /etc/hello
%%config(noreplace) /etc/hello/hello.conf
%%ghost /var/log/hello.log
%%changelog
* Mon Nov 23 2026 Kiln Test <test@example.org> - 1:1.2.3-4
- second entry
* Sun Nov 22 2026 Kiln Test <test@example.org> - 1:1.2.3-3
- first entry
`

// plainSpecTemplate is a package with no dependencies beyond rpmlib
// features, which dnf can resolve in an empty installroot.
const plainSpecTemplate = `Name: %s
Version: %s
Release: %s
Summary: Plain package for tests
License: MIT
BuildArch: noarch
%%description
A data file and nothing else.
%%install
mkdir -p %%{buildroot}/usr/share/kiln
echo data > %%{buildroot}/usr/share/kiln/%%{name}.txt
%%files
/usr/share/kiln/%%{name}.txt
`

// buildRPM builds a noarch rpm from specTemplate with the real rpmbuild and
// returns its path.
func buildRPM(t testing.TB, name, version, release string) string {
	t.Helper()
	return buildRPMFrom(t, specTemplate, name, version, release)
}

// buildRPMFrom builds a noarch rpm from a spec template taking name,
// version and release.
func buildRPMFrom(t testing.TB, template, name, version, release string) string {
	t.Helper()
	testenv.Tool(t, "rpmbuild")
	top := t.TempDir()
	spec := filepath.Join(top, name+".spec")
	if err := os.WriteFile(spec, fmt.Appendf(nil, template, name, version, release), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "", nil, "rpmbuild", "-bb", "--nodeps", "--quiet", "--define", "_topdir "+top, spec)
	path := filepath.Join(top, "RPMS", "noarch", fmt.Sprintf("%s-%s-%s.noarch.rpm", name, version, release))
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("rpmbuild made no %s: %v", path, err)
	}
	return path
}

// buildSRPM builds a source rpm from specTemplate with the real rpmbuild.
func buildSRPM(t testing.TB, name, version, release string) string {
	t.Helper()
	testenv.Tool(t, "rpmbuild")
	top := t.TempDir()
	spec := filepath.Join(top, name+".spec")
	if err := os.WriteFile(spec, fmt.Appendf(nil, specTemplate, name, version, release), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "", nil, "rpmbuild", "-bs", "--nodeps", "--quiet", "--define", "_topdir "+top, spec)
	path := filepath.Join(top, "SRPMS", fmt.Sprintf("%s-%s-%s.src.rpm", name, version, release))
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("rpmbuild made no %s: %v", path, err)
	}
	return path
}

// run runs a command and fails the test with its output when it fails.
func run(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// testKey is an OpenPGP key made by the real gpg, exported armored.
type testKey struct {
	Public  []byte
	Private []byte
}

// gpgKey generates a key with gpg in a throw-away GNUPGHOME; algo is a
// gpg --quick-gen-key algorithm such as rsa3072 or ed25519.
func gpgKey(t testing.TB, algo string) testKey {
	t.Helper()
	testenv.Tool(t, "gpg")
	home, err := os.MkdirTemp("", "kiln-gpg-")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"GNUPGHOME=" + home}
	t.Cleanup(func() {
		runErr("", env, "gpgconf", "--kill", "gpg-agent")
		os.RemoveAll(home)
	})
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	uid := "Kiln Test " + algo + " <" + algo + "@example.org>"
	run(t, "", env, "gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", uid, algo, "sign", "never")
	return testKey{
		Public:  []byte(run(t, "", env, "gpg", "--batch", "--armor", "--export", uid)),
		Private: []byte(run(t, "", env, "gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--armor", "--export-secret-keys", uid)),
	}
}

// testSigner signs with an unencrypted armored private key; the publisher's
// own key loading lives elsewhere.
type testSigner struct{ entity *openpgp.Entity }

func newTestSigner(t testing.TB, armoredPrivate []byte) testSigner {
	t.Helper()
	ring, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(armoredPrivate))
	if err != nil {
		t.Fatalf("read test key: %v", err)
	}
	if len(ring) != 1 || ring[0].PrivateKey == nil {
		t.Fatalf("test key: want one private key, got %d entities", len(ring))
	}
	return testSigner{entity: ring[0]}
}

func (s testSigner) DetachSign(ctx context.Context, r io.Reader, armored bool) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	cfg := &packet.Config{DefaultHash: crypto.SHA256}
	var err error
	if armored {
		err = openpgp.ArmoredDetachSign(&buf, s.entity, r, cfg)
	} else {
		err = openpgp.DetachSign(&buf, s.entity, r, cfg)
	}
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// rpmkeysCheck runs rpmkeys --checksig at the strict "signature" level with
// a private rpm database that trusts only pubKeys.
func rpmkeysCheck(t testing.TB, path string, pubKeys ...[]byte) (string, error) {
	t.Helper()
	testenv.Tool(t, "rpmkeys")
	db := t.TempDir()
	for i, k := range pubKeys {
		kf := filepath.Join(db, fmt.Sprintf("key%d.asc", i))
		if err := os.WriteFile(kf, k, 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, "", nil, "rpmkeys", "--define", "_dbpath "+db, "--import", kf)
	}
	return runErr("", nil, "rpmkeys", "--define", "_dbpath "+db, "--define", "_pkgverify_level signature", "--checksig", "-v", path)
}
