package rpm

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

func TestSignFileRpmkeys(t *testing.T) {
	t.Parallel()
	unsigned := buildRPM(t, "kiln-signed", "1.0", "1")
	for _, tc := range []struct {
		algo  string
		which Signatures
	}{{"rsa3072", HeaderAndPayload}, {"ed25519", HeaderAndPayload}, {"rsa3072", HeaderOnly}, {"ed25519", HeaderOnly}} {
		t.Run(tc.algo+"/"+string(tc.which), func(t *testing.T) {
			t.Parallel()
			algo := tc.algo
			key := gpgKey(t, algo)
			other := gpgKey(t, algo)
			dst := filepath.Join(t.TempDir(), "signed.rpm")
			if err := SignFileWith(context.Background(), newTestSigner(t, key.Private), unsigned, dst, tc.which); err != nil {
				t.Fatal(err)
			}
			l := readSigned(t, dst)
			_, hasPGP := l.sig.entry(sigTagPGP)
			_, hasGPG := l.sig.entry(sigTagGPG)
			if full := hasPGP || hasGPG; full != (tc.which == HeaderAndPayload) {
				t.Errorf("header+payload signature present: %v, signatures %q", full, tc.which)
			}
			if out, err := rpmkeysCheck(t, dst, key.Public); err != nil {
				t.Fatalf("rpmkeys rejected the signed rpm: %v\n%s", err, out)
			} else {
				t.Logf("rpmkeys: %s", out)
				if !strings.Contains(out, "Header V4") {
					t.Errorf("rpmkeys did not see a V4 header signature:\n%s", out)
				}
			}
			if out, err := rpmkeysCheck(t, unsigned, key.Public); err == nil {
				t.Errorf("rpmkeys accepted the unsigned rpm in strict mode:\n%s", out)
			}
			if out, err := rpmkeysCheck(t, dst, other.Public); err == nil {
				t.Errorf("rpmkeys accepted an rpm signed by a key it does not trust:\n%s", out)
			}
			// Flip one byte in the main header, then one in the payload.
			p, err := ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			for name, off := range map[string]int64{"header": p.HeaderStart + 200, "payload": p.HeaderEnd + 40} {
				b, err := os.ReadFile(dst)
				if err != nil {
					t.Fatal(err)
				}
				b[off] ^= 0x55
				bad := filepath.Join(t.TempDir(), "tampered-"+name+".rpm")
				if err := os.WriteFile(bad, b, 0o644); err != nil {
					t.Fatal(err)
				}
				if out, err := rpmkeysCheck(t, bad, key.Public); err == nil {
					t.Errorf("rpmkeys accepted an rpm with a tampered %s:\n%s", name, out)
				}
			}
		})
	}
}

// TestSignFileStructure checks the new signature header with go-crypto
// alone, so it runs without gpg or rpm: the header-only and header+payload
// signatures verify over the right bytes, the digests are fresh, the main
// header and payload are unchanged, and signing again replaces the old
// signatures rather than adding to them.
func TestSignFileStructure(t *testing.T) {
	t.Parallel()
	ent, err := openpgp.NewEntity("Kiln Test", "", "test@example.org", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	ring := openpgp.EntityList{ent}
	dir := t.TempDir()
	once := filepath.Join(dir, "once.rpm")
	twice := filepath.Join(dir, "twice.rpm")
	ctx := context.Background()
	if err := SignFile(ctx, testSigner{entity: ent}, testRPM, once); err != nil {
		t.Fatal(err)
	}
	copyFile(t, once, twice)
	if err := SignFile(ctx, testSigner{entity: ent}, twice, twice); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(testRPM)
	if err != nil {
		t.Fatal(err)
	}
	origLayout, err := readLayout(bytes.NewReader(orig), int64(len(orig)))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{once, twice} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		l, err := readLayout(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if !bytes.Equal(b[l.mainStart:], orig[origLayout.mainStart:]) {
			t.Errorf("%s: main header or payload changed", path)
		}
		if l.mainStart%8 != 0 {
			t.Errorf("%s: main header at %d, not 8-byte aligned", path, l.mainStart)
		}
		hdr := b[l.mainStart:l.payloadStart]
		whole := b[l.mainStart:]
		sha := sha256.Sum256(hdr)
		md := md5.Sum(whole)
		if got := l.sig.string(sigTagSHA256); got != hex.EncodeToString(sha[:]) {
			t.Errorf("%s: SHA256 tag %q, want %x", path, got, sha)
		}
		if got := l.sig.bin(sigTagMD5); !bytes.Equal(got, md[:]) {
			t.Errorf("%s: MD5 tag %x, want %x", path, got, md)
		}
		if got, _ := l.sig.int(sigTagSize); got != int64(len(whole)) {
			t.Errorf("%s: SIZE tag %d, want %d", path, got, len(whole))
		}
		if got, want := l.sig.ints(sigTagPayloadSize), origLayout.sig.ints(sigTagPayloadSize); !slices.Equal(got, want) {
			t.Errorf("%s: PAYLOADSIZE %v not kept (was %v)", path, got, want)
		}
		for _, c := range []struct {
			tag  uint32
			data []byte
		}{{sigTagDSA, hdr}, {sigTagGPG, whole}} {
			sig := l.sig.bin(c.tag)
			if sig == nil {
				t.Errorf("%s: no signature tag %d", path, c.tag)
				continue
			}
			if _, err := openpgp.CheckDetachedSignature(ring, bytes.NewReader(c.data), bytes.NewReader(sig), nil); err != nil {
				t.Errorf("%s: tag %d does not verify: %v", path, c.tag, err)
			}
		}
		for _, tag := range []uint32{sigTagRSA, sigTagPGP, sigTagReservedSpace} {
			if _, ok := l.sig.entry(tag); ok {
				t.Errorf("%s: unexpected tag %d for an EdDSA key", path, tag)
			}
		}
		p, err := ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if p.Name != "kiln-hello" || p.HeaderEnd-p.HeaderStart != int64(len(hdr)) {
			t.Errorf("%s: signed package reads back wrong: %s, header %d-%d", path, p.Name, p.HeaderStart, p.HeaderEnd)
		}
	}
}

func TestSignFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.rpm")
	if err := os.WriteFile(junk, []byte("not an rpm at all, but long enough to hold a lead of ninety-six bytes, yes indeed......"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "out.rpm")
	tests := []struct {
		name   string
		signer Signer
		src    string
		want   string
	}{
		{"no signer", nil, testRPM, "no signer"},
		{"missing source", failSigner{}, filepath.Join(dir, "nope.rpm"), "no such file"},
		{"not an rpm", failSigner{}, junk, "junk.rpm"},
		{"signer fails", failSigner{}, testRPM, "signer broke"},
		{"signer armors", armorSigner{}, testRPM, "armored"},
	}
	for _, tc := range tests {
		err := SignFile(context.Background(), tc.signer, tc.src, dst)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
		if _, serr := os.Stat(dst); !os.IsNotExist(serr) {
			t.Errorf("%s: output written despite the error", tc.name)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".out.rpm.*")); len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

type failSigner struct{}

func (failSigner) DetachSign(context.Context, io.Reader, bool) ([]byte, error) {
	return nil, errors.New("signer broke")
}

type armorSigner struct{}

func (armorSigner) DetachSign(context.Context, io.Reader, bool) ([]byte, error) {
	return []byte("-----BEGIN PGP SIGNATURE-----\n"), nil
}

func TestSignatureAlgorithm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		pkt  []byte
		want int
		err  bool
	}{
		{"v4 new format", []byte{0xc2, 5, 4, 0, pkEdDSA, 8, 0}, pkEdDSA, false},
		{"v4 old format 1-byte length", []byte{0x88, 5, 4, 0, pkRSA, 8, 0}, pkRSA, false},
		{"v4 old format 2-byte length", []byte{0x89, 0, 5, 4, 0, pkRSA, 8, 0}, pkRSA, false},
		{"v3", append([]byte{0x88, 19, 3, 5, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, pkDSA}, 8, 0, 0), pkDSA, false},
		{"public key packet", []byte{0xc6, 5, 4, 0, 0, 0, 0}, 0, true},
		{"empty", nil, 0, true},
		{"armor", []byte("-----BEGIN"), 0, true},
	}
	for _, tc := range tests {
		got, err := signatureAlgorithm(tc.pkt)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%s: got %d, %v; want %d, error %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func readSigned(t *testing.T, path string) *layout {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l, err := readLayout(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return l
}

// TestSignHeaderOnlyKeepsBothWithoutPayloadDigest: a package whose header
// has no payload digest (built by rpm before 4.14) gets the header+payload
// signature too, or nothing would cover its payload.
func TestSignHeaderOnlyKeepsBothWithoutPayloadDigest(t *testing.T) {
	t.Parallel()
	ent, err := openpgp.NewEntity("Kiln Test", "", "test@example.org", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name      string
		strip     bool
		wantWhole bool
	}{{"with payload digest", false, false}, {"without payload digest", true, true}} {
		src := filepath.Join(dir, "src.rpm")
		data := rewriteMain(t, func(v []tagValue) []tagValue {
			if tc.strip {
				v = slices.DeleteFunc(v, func(x tagValue) bool { return x.Tag == payloadDigestTag })
			}
			return v
		})
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, "dst.rpm")
		if err := SignFileWith(context.Background(), testSigner{entity: ent}, src, dst, HeaderOnly); err != nil {
			t.Fatal(err)
		}
		l := readSigned(t, dst)
		if _, ok := l.sig.entry(sigTagDSA); !ok {
			t.Errorf("%s: no header-only signature", tc.name)
		}
		if _, ok := l.sig.entry(sigTagGPG); ok != tc.wantWhole {
			t.Errorf("%s: header+payload signature present: %v, want %v", tc.name, ok, tc.wantWhole)
		}
	}
}

func TestParseSignatures(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Signatures{"": HeaderAndPayload, "header+payload": HeaderAndPayload, "header": HeaderOnly} {
		if got, err := ParseSignatures(in); err != nil || got != want {
			t.Errorf("ParseSignatures(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseSignatures("v3"); err == nil || !strings.Contains(err.Error(), `"v3"`) {
		t.Errorf("ParseSignatures(v3): %v", err)
	}
}
