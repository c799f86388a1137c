package executor

import "testing"

func TestSourceHost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url    string
		want   string
		wantOK bool
	}{
		{url: "http://deb.debian.org/debian", want: "http://deb.debian.org:80", wantOK: true},
		{url: "https://Mirror.Example.org/rocky/9/", want: "https://mirror.example.org:443", wantOK: true},
		{url: "http://127.0.0.1:8080/mos-9.0", want: "http://127.0.0.1:8080", wantOK: true},
		{url: "http://[::1]:8080/repo", want: "http://[::1]:8080", wantOK: true},
		{url: "file:///build/.kiln/repos/0", wantOK: false},
		{url: "copy:/srv/repo", wantOK: false},
		{url: "ftp://ftp.example.org/debian", wantOK: false},
		{url: "", wantOK: false},
		{url: "http:///no-host", wantOK: false},
	}
	for _, tt := range tests {
		got, ok := SourceHost(tt.url)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("SourceHost(%q) = %q, %v; want %q, %v", tt.url, got, ok, tt.want, tt.wantOK)
		}
	}
}
