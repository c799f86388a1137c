package config

import (
	"strings"
	"testing"
)

type sample struct {
	Listen string `yaml:"listen"`
	Slots  int    `yaml:"slots"`
	Nested struct {
		Name string `yaml:"name"`
	} `yaml:"nested"`
}

func TestDecode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in, wantErr string
		want              sample
	}{
		{name: "defaults kept", in: "slots: 3\n", want: sample{Listen: "127.0.0.1:1", Slots: 3}},
		{name: "empty", in: "", want: sample{Listen: "127.0.0.1:1"}},
		{name: "unknown key", in: "slots: 3\nlisten: x\nbogus: 1\n", wantErr: "w.yaml: line 3: field bogus not found"},
		{name: "nested unknown", in: "nested:\n  nme: x\n", wantErr: "line 2: field nme not found"},
		{name: "wrong type", in: "slots: many\n", wantErr: "line 1: cannot unmarshal"},
		{name: "two docs", in: "slots: 1\n---\nslots: 2\n", wantErr: "more than one YAML document"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := sample{Listen: "127.0.0.1:1"}
			err := Decode("w.yaml", []byte(tc.in), &got)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Listen != tc.want.Listen || got.Slots != tc.want.Slots {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
