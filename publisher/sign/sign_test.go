package sign_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/publisher/sign"
	"github.com/kiln-build/kiln/publisher/sign/signtest"
)

const release = "Origin: Kiln\nLabel: Kiln\nSuite: stable\nCodename: bookworm\n- a line that needs dash escaping\nFrom the start\n"

func TestSignaturesAcceptedByGpgv(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, algo, pass string
		usePassEnv       bool
		wantAlgo         string
	}{
		{name: "rsa with passphrase file", algo: "rsa3072", pass: "correct horse", wantAlgo: "rsa"},
		{name: "ed25519 without passphrase", algo: "ed25519", wantAlgo: "eddsa"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			op := signtest.Generate(t, tc.algo, tc.pass)
			key, err := sign.Load(ctx, sign.Config{KeyFile: op.KeyFile, PassphraseFile: op.PassphraseFile})
			if err != nil {
				t.Fatal(err)
			}
			if key.Fingerprint() != op.Fingerprint {
				t.Errorf("Fingerprint() = %s, gpg says %s", key.Fingerprint(), op.Fingerprint)
			}
			if key.Algorithm() != tc.wantAlgo {
				t.Errorf("Algorithm() = %s, want %s", key.Algorithm(), tc.wantAlgo)
			}
			dir := t.TempDir()
			// The exported public key is what customers get: verify with it.
			keyring := filepath.Join(dir, "public.gpg")
			write(t, keyring, signtest.Dearmor(t, key.PublicKey()))
			data := filepath.Join(dir, "Release")
			write(t, data, []byte(release))

			for _, armored := range []bool{true, false} {
				sig, err := key.DetachSign(ctx, strings.NewReader(release), armored)
				if err != nil {
					t.Fatal(err)
				}
				if got := bytes.HasPrefix(sig, []byte("-----BEGIN PGP SIGNATURE-----")); got != armored {
					t.Errorf("armored=%v but output starts %q", armored, sig[:min(len(sig), 30)])
				}
				sigFile := filepath.Join(dir, "Release.gpg")
				write(t, sigFile, sig)
				if out, ok := signtest.Gpgv(t, keyring, sigFile, data); !ok {
					t.Fatalf("gpgv rejected detached signature (armored=%v):\n%s", armored, out)
				}
				tampered := filepath.Join(dir, "Release.tampered")
				write(t, tampered, []byte(strings.Replace(release, "stable", "stab1e", 1)))
				if out, ok := signtest.Gpgv(t, keyring, sigFile, tampered); ok {
					t.Fatalf("gpgv accepted a signature over tampered data:\n%s", out)
				}
			}

			in, err := key.ClearSign(ctx, []byte(release))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(in, []byte("Hash: SHA512")) {
				t.Errorf("InRelease does not use SHA512:\n%s", in)
			}
			inFile := filepath.Join(dir, "InRelease")
			write(t, inFile, in)
			if out, ok := signtest.Gpgv(t, keyring, inFile); !ok {
				t.Fatalf("gpgv rejected cleartext signature:\n%s\n%s", out, in)
			}
			write(t, inFile, bytes.Replace(in, []byte("bookworm"), []byte("trixie"), 1))
			if out, ok := signtest.Gpgv(t, keyring, inFile); ok {
				t.Fatalf("gpgv accepted tampered cleartext:\n%s", out)
			}

			// Another operator's key must not verify our signatures.
			other := signtest.Generate(t, "ed25519", "")
			write(t, inFile, in)
			if out, ok := signtest.Gpgv(t, other.Keyring, inFile); ok {
				t.Fatalf("gpgv accepted our signature with an unrelated key:\n%s", out)
			}
		})
	}
}

func TestLoadPassphraseFromEnvironment(t *testing.T) {
	op := signtest.Generate(t, "ed25519", "s3cret")
	t.Setenv("KILN_TEST_SIGN_PASSPHRASE", "s3cret")
	key, err := sign.Load(context.Background(), sign.Config{KeyFile: op.KeyFile, PassphraseEnv: "KILN_TEST_SIGN_PASSPHRASE"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := key.ClearSign(context.Background(), []byte("x\n")); err != nil {
		t.Fatal(err)
	}
}

func TestLoadRefusals(t *testing.T) {
	t.Parallel()
	op := signtest.Generate(t, "ed25519", "right")
	dir := t.TempDir()
	wrongPass := filepath.Join(dir, "wrong")
	write(t, wrongPass, []byte("wrong\n"))
	publicOnly := filepath.Join(dir, "public.asc")
	key, err := sign.Load(context.Background(), sign.Config{KeyFile: op.KeyFile, PassphraseFile: op.PassphraseFile})
	if err != nil {
		t.Fatal(err)
	}
	write(t, publicOnly, key.PublicKey())
	garbage := filepath.Join(dir, "garbage.asc")
	write(t, garbage, []byte("not a key\n"))

	cases := []struct {
		name    string
		cfg     sign.Config
		wantErr string
	}{
		{name: "no key file", cfg: sign.Config{}, wantErr: "no signing key configured"},
		{name: "missing file", cfg: sign.Config{KeyFile: filepath.Join(dir, "nope.asc")}, wantErr: "nope.asc"},
		{name: "no passphrase", cfg: sign.Config{KeyFile: op.KeyFile}, wantErr: "protected by a passphrase"},
		{name: "wrong passphrase", cfg: sign.Config{KeyFile: op.KeyFile, PassphraseFile: wrongPass}, wantErr: "wrong passphrase"},
		{name: "unset env", cfg: sign.Config{KeyFile: op.KeyFile, PassphraseEnv: "KILN_TEST_UNSET_VARIABLE_X"}, wantErr: "KILN_TEST_UNSET_VARIABLE_X is not set"},
		{name: "public key only", cfg: sign.Config{KeyFile: publicOnly}, wantErr: "only a public key"},
		{name: "garbage", cfg: sign.Config{KeyFile: garbage}, wantErr: "not an armored OpenPGP key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := sign.Load(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Load() error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestSignHonoursCancelledContext(t *testing.T) {
	t.Parallel()
	op := signtest.Generate(t, "ed25519", "")
	key, err := sign.Load(context.Background(), sign.Config{KeyFile: op.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := key.DetachSign(ctx, strings.NewReader("x"), true); err == nil {
		t.Error("DetachSign with cancelled context succeeded")
	}
	if _, err := key.ClearSign(ctx, []byte("x")); err == nil {
		t.Error("ClearSign with cancelled context succeeded")
	}
}

func write(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
