package rpm

import (
	"bytes"
	"os"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/kiln-build/kiln/publisher/sign/signtest"
)

// The rpm tests' own signer keeps the detached half of the signer
// contract, so what they show holds for the publisher's key.
func TestTestSignerKeepsSignerContract(t *testing.T) {
	t.Parallel()
	op := signtest.Generate(t, "ed25519", "")
	private, err := os.ReadFile(op.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	s := newTestSigner(t, private)
	ring := openpgp.EntityList{s.entity}
	signtest.ContractDetached(t, s, signtest.Verifier{
		Detached: func(data, sig []byte) error {
			check := openpgp.CheckDetachedSignature
			if bytes.HasPrefix(sig, []byte("-----BEGIN PGP SIGNATURE-----")) {
				check = openpgp.CheckArmoredDetachedSignature
			}
			_, err := check(ring, bytes.NewReader(data), bytes.NewReader(sig), nil)
			return err
		},
	})
}
