// Command gendebs writes N small generated .deb packages into a directory,
// the same input for the publisher and for the reference tools in
// bench/publisher/run.sh.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kiln-build/kiln/publisher/deb/debtest"
)

func main() {
	n := flag.Int("n", 2000, "number of packages")
	dir := flag.String("dir", "", "output `directory`")
	prefix := flag.String("prefix", "bench-pkg", "package name prefix")
	start := flag.Int("start", 0, "first package number")
	flag.Parse()
	if err := run(*dir, *prefix, *start, *n); err != nil {
		fmt.Fprintln(os.Stderr, "gendebs:", err)
		os.Exit(1)
	}
}

func run(dir, prefix string, start, n int) error {
	if dir == "" {
		return fmt.Errorf("give --dir DIR")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := start; i < start+n; i++ {
		name := fmt.Sprintf("%s-%06d", prefix, i)
		control := debtest.Control(name, "1.0-1", "amd64") +
			"Depends: libc6 (>= 2.36), " + fmt.Sprintf("%s-%06d", prefix, (i+1)%(start+n)) + "\n" +
			"Homepage: https://example.org/" + name + "\n"
		data, err := debtest.Build(control, debtest.Options{Payload: []byte(name)})
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+"_1.0-1_amd64.deb"), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
