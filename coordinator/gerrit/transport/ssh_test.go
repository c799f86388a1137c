package transport

import (
	"path/filepath"
	"testing"

	"github.com/kiln-build/kiln/coordinator/gerrit/gerrittest"
)

// TestEncryptedClientKeyFromEnvironment: the passphrase may come from the
// environment variable private_key_passphrase_env names.
func TestEncryptedClientKeyFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	sc := SSHConfig{PrivateKeyFile: filepath.Join(dir, "id_ed25519"), PrivateKeyPassphraseEnv: "KILN_TEST_GERRIT_KEY_PASSPHRASE"}
	pub := gerrittest.WriteEncryptedClientKey(t, sc.PrivateKeyFile, "from the environment")
	t.Setenv(sc.PrivateKeyPassphraseEnv, "from the environment")
	signer, encrypted, err := loadSigner(sc)
	if err != nil {
		t.Fatal(err)
	}
	if !encrypted || string(signer.PublicKey().Marshal()) != string(pub.Marshal()) {
		t.Fatalf("loaded key %v (encrypted %v), want the written one, encrypted", signer.PublicKey(), encrypted)
	}
}
