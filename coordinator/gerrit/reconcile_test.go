package gerrit

import (
	"slices"
	"testing"
)

// git and ssh, run to read branch heads, do not inherit the environment
// variables that hold SSH key passphrases.
func TestGitDoesNotSeePassphraseVariables(t *testing.T) {
	t.Parallel()
	g := &gitHeads{}
	g.addSSH(ServerConfig{Name: "review", GitURL: "ssh://kiln@review.example.org:29418/{project}", PrivateKeyFile: "/etc/kiln/gerrit_key",
		KnownHostsFile: "/etc/kiln/known_hosts", PrivateKeyPassphraseEnv: "KILN_GERRIT_PASSPHRASE"})
	env := []string{"PATH=/usr/bin", "KILN_GERRIT_PASSPHRASE=hunter2", "HOME=/root", "KILN_GERRIT_PASSPHRASE_NOT=kept"}
	got := withoutVars(env, g.secretEnv)
	want := []string{"PATH=/usr/bin", "HOME=/root", "KILN_GERRIT_PASSPHRASE_NOT=kept"}
	if !slices.Equal(got, want) {
		t.Errorf("environment for git = %q, want %q", got, want)
	}
}
