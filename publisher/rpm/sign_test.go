package rpm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSignFileRpmkeys(t *testing.T) {
	t.Parallel()
	unsigned := buildRPM(t, "kiln-signed", "1.0", "1")
	for _, algo := range []string{"rsa3072", "ed25519"} {
		t.Run(algo, func(t *testing.T) {
			t.Parallel()
			key := gpgKey(t, algo)
			other := gpgKey(t, algo)
			dst := filepath.Join(t.TempDir(), "signed.rpm")
			if err := SignFile(context.Background(), newTestSigner(t, key.Private), unsigned, dst); err != nil {
				t.Fatal(err)
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
