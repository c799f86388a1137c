package sign_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"

	"github.com/kiln-build/kiln/publisher/sign"
	"github.com/kiln-build/kiln/publisher/sign/signtest"
)

// OpenPGPVerifier checks signatures against an armored public key.
func openPGPVerifier(t *testing.T, armoredPublic []byte) signtest.Verifier {
	t.Helper()
	ring, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(armoredPublic))
	if err != nil {
		t.Fatal(err)
	}
	return signtest.Verifier{
		Detached: func(data, sig []byte) error {
			check := openpgp.CheckDetachedSignature
			if bytes.HasPrefix(sig, []byte("-----BEGIN PGP SIGNATURE-----")) {
				check = openpgp.CheckArmoredDetachedSignature
			}
			_, err := check(ring, bytes.NewReader(data), bytes.NewReader(sig), nil)
			return err
		},
		Clear: func(msg []byte) ([]byte, error) {
			b, rest := clearsign.Decode(msg)
			if b == nil {
				return nil, errors.New("not a cleartext-signed message")
			}
			if len(bytes.TrimSpace(rest)) != 0 {
				return nil, fmt.Errorf("%d bytes after the signature", len(rest))
			}
			if _, err := b.VerifySignature(ring, nil); err != nil {
				return nil, err
			}
			_, err := io.Copy(io.Discard, b.ArmoredSignature.Body)
			return b.Plaintext, err
		},
	}
}

func TestKeyKeepsSignerContract(t *testing.T) {
	t.Parallel()
	for _, algo := range []string{"ed25519", "rsa3072"} {
		t.Run(algo, func(t *testing.T) {
			t.Parallel()
			op := signtest.Generate(t, algo, "")
			key, err := sign.Load(context.Background(), sign.Config{KeyFile: op.KeyFile})
			if err != nil {
				t.Fatal(err)
			}
			signtest.Contract(t, key, openPGPVerifier(t, key.PublicKey()))
		})
	}
}
