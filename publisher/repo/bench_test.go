package repo_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/kiln-build/kiln/publisher/deb/debtest"
	"github.com/kiln-build/kiln/publisher/repo"
	"github.com/kiln-build/kiln/publisher/sign"
	"github.com/kiln-build/kiln/publisher/sign/signtest"
)

// benchRepo makes a store with n generated packages included.
func benchRepo(b *testing.B, n int) (*repo.Store, *sign.Key, string) {
	b.Helper()
	ctx := context.Background()
	op := signtest.Generate(b, "rsa3072", "")
	key, err := sign.Load(ctx, sign.Config{KeyFile: op.KeyFile})
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	st, err := repo.Open(ctx, repo.Options{Root: filepath.Join(dir, "root")}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if err := st.CreateRepo(ctx, repo.Config{Name: "bench", Format: repo.FormatDeb, Suite: "stable"}); err != nil {
		b.Fatal(err)
	}
	var inputs []repo.Input
	for i := range n {
		inputs = append(inputs, writeBenchDeb(b, dir, i))
	}
	if _, err := st.Include(ctx, "bench", inputs, nil, nil); err != nil {
		b.Fatal(err)
	}
	return st, key, dir
}

func writeBenchDeb(b *testing.B, dir string, i int) repo.Input {
	b.Helper()
	name := fmt.Sprintf("bench-%06d", i)
	data, err := debtest.Build(debtest.Control(name, "1.0-1", "amd64"), debtest.Options{Payload: []byte(name)})
	if err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(dir, name+"_1.0-1_amd64.deb")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		b.Fatal(err)
	}
	return repo.Input{Name: filepath.Base(p), Path: p}
}

// BenchmarkPublish measures a full signed publish (indexes, gz, xz,
// InRelease, Release.gpg, switch) of a repository of n packages.
func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{2000, 20000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			st, key, _ := benchRepo(b, n)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := st.Publish(ctx, "bench", key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAddOneAndPublish measures including one package into a
// repository of n packages and publishing it signed.
func BenchmarkAddOneAndPublish(b *testing.B) {
	for _, n := range []int{2000, 20000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			st, key, dir := benchRepo(b, n)
			ctx := context.Background()
			i := n
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				in := writeBenchDeb(b, dir, i)
				i++
				b.StartTimer()
				if _, _, err := st.IncludeAndPublish(ctx, "bench", []repo.Input{in}, nil, key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
