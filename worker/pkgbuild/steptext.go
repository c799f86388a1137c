package pkgbuild

import (
	"fmt"
	"strings"

	"github.com/kiln-build/kiln/worker/executor"
)

// How a step reads in the log and in the record.

func stepMode(s executor.Step) string {
	who := executor.BuildUser
	if s.Root {
		who = "root"
	}
	net := "no network"
	if s.Network {
		net = "network"
	}
	return who + ", " + net
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=+.,:/@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// readableStep is a step's command as a person reads it in the log: a
// generated script (sh -ec SCRIPT NAME) is shown as its lines, indented,
// not as one quoted argument; other commands as a shell would take them.
// The record keeps the exact command line (shellJoin).
func readableStep(argv []string) string {
	if len(argv) == 4 && argv[0] == "sh" && argv[1] == "-ec" {
		var b strings.Builder
		fmt.Fprintf(&b, "script %s, run by sh -e:", argv[3])
		for _, l := range strings.Split(strings.TrimRight(argv[2], "\n"), "\n") {
			b.WriteString("\n    " + l)
		}
		return b.String()
	}
	return shellJoin(argv)
}

func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}
