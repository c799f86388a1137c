package gerrit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/gerrittest"
	"github.com/kiln-build/kiln/coordinator/gerrit/record"
	"github.com/kiln-build/kiln/coordinator/store"
)

// TestEncryptedClientKey: an encrypted private_key_file is unlocked with
// the passphrase from private_key_passphrase_file; the stream and the
// review both log in with it.
func TestEncryptedClientKey(t *testing.T) {
	t.Parallel()
	keyDir := t.TempDir()
	keyFile := filepath.Join(keyDir, "id_ed25519")
	passFile := filepath.Join(keyDir, "passphrase")
	if err := os.WriteFile(passFile, []byte("open sesame\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pub := gerrittest.WriteEncryptedClientKey(t, keyFile, "open sesame")
	h := newHarness(t, gerrittest.Options{Accounts: []gerrittest.Account{{User: "kiln", Key: pub}}}, func(c *Config, _ *gerrittest.Server) {
		c.Servers[0].PrivateKeyFile = keyFile
		c.Servers[0].PrivateKeyPassphraseFile = passFile
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h.srv.Send(patchsetCreated(nginx, "9.0", 41, 1, psRev))
	h.builds.wait(t, 1, 10*time.Second)
	if err := h.in.BuildFinished(ctx, BuildResult{JobID: "job-1", State: record.StateSucceeded}); err != nil {
		t.Fatal(err)
	}
	revs, err := h.srv.WaitReviews(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if revs[0].Change != 41 || revs[0].User != "kiln" {
		t.Fatalf("review = %+v, want one on change 41 by kiln", revs[0])
	}
}

// TestClientKeyErrors: the intake does not start with a key it cannot
// use, and says which file and which option to look at.
func TestClientKeyErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	encrypted := filepath.Join(dir, "encrypted")
	gerrittest.WriteEncryptedClientKey(t, encrypted, "right")
	plain := filepath.Join(dir, "plain")
	gerrittest.WriteClientKey(t, plain)
	wrong := filepath.Join(dir, "wrong")
	if err := os.WriteFile(wrong, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	right := filepath.Join(dir, "right")
	if err := os.WriteFile(right, []byte("right"), 0o600); err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		sc      ServerConfig
		wantErr []string // "" when New must succeed
	}{
		{"no passphrase", ServerConfig{PrivateKeyFile: encrypted},
			[]string{encrypted, "is encrypted", "private_key_passphrase_file"}},
		{"wrong passphrase", ServerConfig{PrivateKeyFile: encrypted, PrivateKeyPassphraseFile: wrong},
			[]string{encrypted, "wrong passphrase", wrong}},
		{"missing passphrase file", ServerConfig{PrivateKeyFile: encrypted, PrivateKeyPassphraseFile: filepath.Join(dir, "nope")},
			[]string{"private_key_passphrase_file", "nope"}},
		{"unset environment variable", ServerConfig{PrivateKeyFile: encrypted, PrivateKeyPassphraseEnv: "KILN_TEST_UNSET_PASSPHRASE"},
			[]string{"KILN_TEST_UNSET_PASSPHRASE", "is not set"}},
		{"right passphrase", ServerConfig{PrivateKeyFile: encrypted, PrivateKeyPassphraseFile: right}, nil},
		{"unencrypted key", ServerConfig{PrivateKeyFile: plain}, nil},
		{"unencrypted key with a passphrase", ServerConfig{PrivateKeyFile: plain, PrivateKeyPassphraseFile: right}, nil},
		{"not a key", ServerConfig{PrivateKeyFile: right}, []string{right, "OpenSSH or PEM"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := loadExample(t)
			sc := tc.sc
			sc.Name, sc.SSH, sc.User, sc.KnownHostsFile = "review", "127.0.0.1:29418", "kiln", known
			sc.GitURL = filepath.Join(dir, "git") + "/{project}"
			cfg.Servers, cfg.Track = []ServerConfig{sc}, nil
			st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "kiln.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			gst, err := st.Gerrit(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			_, err = New(cfg, gst, newFakeBuilds(), nil, nil)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New succeeded, want an error saying %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
