package repo_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/kiln-build/kiln/publisher/repo"
)

// BenchmarkInclude measures including n generated packages into a new
// store (each iteration a store of its own).
func BenchmarkInclude(b *testing.B) {
	for _, n := range []int{2000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			ctx := context.Background()
			dir := b.TempDir()
			var inputs []repo.Input
			for i := range n {
				inputs = append(inputs, writeBenchDeb(b, dir, i))
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				b.StopTimer()
				st, err := repo.Open(ctx, repo.Options{Root: filepath.Join(dir, fmt.Sprintf("root-%d", i))}, nil)
				if err != nil {
					b.Fatal(err)
				}
				i++
				if err := st.CreateRepo(ctx, repo.Config{Name: "bench", Format: repo.FormatDeb, Suite: "stable"}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := st.Include(ctx, "bench", inputs, nil, nil); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				st.Close()
				b.StartTimer()
			}
		})
	}
}
