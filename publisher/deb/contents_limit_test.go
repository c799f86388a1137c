package deb

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/publisher/deb/debtest"
)

// A package that lists more files than a Contents index takes is refused
// with a clear error, not held in memory whole. Not parallel: it lowers
// the bounds, which parallel tests run only after it has put back.
func TestDataFilesRefusesTooManyFiles(t *testing.T) {
	saved, savedBytes := maxDataFiles, maxDataPathBytes
	defer func() { maxDataFiles, maxDataPathBytes = saved, savedBytes }()
	maxDataFiles = 100
	data, err := debtest.Build(debtest.Control("kiln-many", "1", "all"), debtest.Options{ExtraFiles: 99})
	if err != nil {
		t.Fatal(err)
	}
	if files, err := DataFiles(bytes.NewReader(data)); err != nil || len(files) != 100 {
		t.Fatalf("100 files at a bound of 100: %d, %v", len(files), err)
	}
	data, err = debtest.Build(debtest.Control("kiln-many", "1", "all"), debtest.Options{ExtraFiles: 100})
	if err != nil {
		t.Fatal(err)
	}
	_, err = DataFiles(bytes.NewReader(data))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "more than 100 files") || !strings.Contains(err.Error(), "turn contents off") {
		t.Fatalf("101 files at a bound of 100: %v", err)
	}
	maxDataFiles, maxDataPathBytes = saved, 1000
	if _, err := DataFiles(bytes.NewReader(data)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("paths over the byte bound: %v", err)
	}
}
