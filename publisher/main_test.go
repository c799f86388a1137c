package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/cmdline"
)

func TestRun(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		args    []string
		wantOut string
		wantErr string
	}{
		{name: "help", args: []string{"--help"}, wantOut: "Usage: publisher <command>"},
		{name: "no command", args: nil, wantErr: `expected one of "include"`},
		{name: "unknown command", args: []string{"frobnicate"}, wantErr: "unexpected argument frobnicate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errb bytes.Buffer
			err := run(context.Background(), tc.args, &out, &errb)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || cmdline.Code(err, -1) != cmdline.ExitUsage {
					t.Fatalf("run() = %v (exit %d), want %q and exit 2", err, cmdline.Code(err, -1), tc.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(out.String(), tc.wantOut) {
				t.Fatalf("run() = %v, output %q", err, out.String())
			}
		})
	}
}
