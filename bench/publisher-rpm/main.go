// Command publisher-rpm-bench times Kiln's rpm repodata writer and rpm
// signer on a directory of packages, for comparison with createrepo_c and
// rpmsign (see run.sh and publisher/rpm/BENCHMARKS.md).
//
//	publisher-rpm-bench repodata DIR
//	    read every *.rpm below DIR, write DIR/repodata, and keep the
//	    per-package metadata in DIR/.kiln-packages.json, as the
//	    publisher's store does;
//	publisher-rpm-bench update DIR RPM...
//	    add RPMs (already below DIR) to the kept metadata and rewrite
//	    DIR/repodata without reading the other packages;
//	publisher-rpm-bench sign KEY.asc SRCDIR DSTDIR
//	    sign every *.rpm in SRCDIR into DSTDIR with the unencrypted
//	    armored private key, using one worker per CPU: header-only and
//	    header+payload signatures (the publisher's default);
//	publisher-rpm-bench sign-header KEY.asc SRCDIR DSTDIR
//	    the same with the header-only signature alone (rpm_signatures:
//	    header).
//
// Each prints the wall time it took on stdout.
package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/kiln-build/kiln/publisher/rpm"
)

const keptName = ".kiln-packages.json"

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "publisher-rpm-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: publisher-rpm-bench repodata DIR | update DIR RPM... | sign|sign-header KEY SRCDIR DSTDIR")
	}
	start := time.Now()
	var err error
	var what string
	switch cmd := args[0]; {
	case cmd == "repodata" && len(args) == 2:
		what, err = fresh(ctx, args[1])
	case cmd == "update" && len(args) >= 3:
		what, err = update(ctx, args[1], args[2:])
	case cmd == "sign" && len(args) == 4:
		what, err = sign(ctx, args[1], args[2], args[3], rpm.HeaderAndPayload)
	case cmd == "sign-header" && len(args) == 4:
		what, err = sign(ctx, args[1], args[2], args[3], rpm.HeaderOnly)
	default:
		return fmt.Errorf("unknown command or wrong arguments: %q", args)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %.3fs\n", what, time.Since(start).Seconds())
	return nil
}

// readAll reads the rpms with one worker per CPU.
func readAll(dir string, paths []string) ([]*rpm.Package, error) {
	pkgs := make([]*rpm.Package, len(paths))
	errs := make([]error, len(paths))
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range next {
				p, err := rpm.ReadFile(paths[i])
				if err != nil {
					errs[i] = err
					continue
				}
				rel, err := filepath.Rel(dir, paths[i])
				if err != nil {
					errs[i] = err
					continue
				}
				p.Location = filepath.ToSlash(rel)
				pkgs[i] = p
			}
		})
	}
	for i := range paths {
		next <- i
	}
	close(next)
	wg.Wait()
	return pkgs, errors.Join(errs...)
}

func findRPMs(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "repodata" || strings.HasPrefix(d.Name(), ".")) && path != dir {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".rpm") {
			out = append(out, path)
		}
		return nil
	})
	return out, err
}

func fresh(ctx context.Context, dir string) (string, error) {
	paths, err := findRPMs(dir)
	if err != nil {
		return "", err
	}
	pkgs, err := readAll(dir, paths)
	if err != nil {
		return "", err
	}
	if err := rpm.WriteRepodata(ctx, dir, pkgs, rpm.RepodataOptions{}); err != nil {
		return "", err
	}
	kept, err := json.Marshal(pkgs)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, keptName), kept, 0o644); err != nil {
		return "", err
	}
	return fmt.Sprintf("repodata fresh, %d packages", len(pkgs)), nil
}

func update(ctx context.Context, dir string, added []string) (string, error) {
	kept, err := os.ReadFile(filepath.Join(dir, keptName))
	if err != nil {
		return "", err
	}
	var pkgs []*rpm.Package
	if err := json.Unmarshal(kept, &pkgs); err != nil {
		return "", fmt.Errorf("%s: %w", keptName, err)
	}
	news, err := readAll(dir, added)
	if err != nil {
		return "", err
	}
	pkgs = append(pkgs, news...)
	slices.SortFunc(pkgs, func(a, b *rpm.Package) int { return strings.Compare(a.Location, b.Location) })
	if err := rpm.WriteRepodata(ctx, dir, pkgs, rpm.RepodataOptions{}); err != nil {
		return "", err
	}
	if kept, err = json.Marshal(pkgs); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, keptName), kept, 0o644); err != nil {
		return "", err
	}
	return fmt.Sprintf("repodata update, %d packages", len(pkgs)), nil
}

// keySigner signs with an unencrypted armored private key.
type keySigner struct{ entity *openpgp.Entity }

func (s keySigner) DetachSign(_ context.Context, r io.Reader, armored bool) ([]byte, error) {
	var buf bytes.Buffer
	cfg := &packet.Config{DefaultHash: crypto.SHA256}
	var err error
	if armored {
		err = openpgp.ArmoredDetachSign(&buf, s.entity, r, cfg)
	} else {
		err = openpgp.DetachSign(&buf, s.entity, r, cfg)
	}
	return buf.Bytes(), err
}

func sign(ctx context.Context, keyFile, src, dst string, which rpm.Signatures) (string, error) {
	f, err := os.Open(keyFile)
	if err != nil {
		return "", err
	}
	ring, err := openpgp.ReadArmoredKeyRing(f)
	f.Close()
	if err != nil || len(ring) == 0 || ring[0].PrivateKey == nil {
		return "", fmt.Errorf("%s: want an armored private key: %v", keyFile, err)
	}
	s := keySigner{entity: ring[0]}
	paths, err := filepath.Glob(filepath.Join(src, "*.rpm"))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", err
	}
	errs := make([]error, len(paths))
	next := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range next {
				errs[i] = rpm.SignFileWith(ctx, s, paths[i], filepath.Join(dst, filepath.Base(paths[i])), which)
			}
		})
	}
	for i := range paths {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	return fmt.Sprintf("signed %d packages (%s)", len(paths), which), nil
}
