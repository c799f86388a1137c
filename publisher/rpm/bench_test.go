package rpm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// benchPackages returns n distinct packages derived from the test rpm, as
// the publisher's store would hand them to WriteRepodata.
func benchPackages(b *testing.B, n int) []*Package {
	b.Helper()
	base, err := ReadFile(testRPM)
	if err != nil {
		b.Fatal(err)
	}
	pkgs := make([]*Package, n)
	for i := range pkgs {
		p := *base
		p.Name = fmt.Sprintf("kiln-bench-%d", i)
		p.Checksum = fmt.Sprintf("%064x", i)
		p.Location = "pool/" + p.Name + "-1.2.3-4.noarch.rpm"
		p.Provides = append([]Dependency{{Name: p.Name, Flags: senseEqual, Epoch: "1", Version: "1.2.3", Release: "4"}}, base.Provides...)
		pkgs[i] = &p
	}
	return pkgs
}

// BenchmarkWriteRepodata rewrites repodata from kept metadata, as the
// publisher does after adding one package to a large repository.
func BenchmarkWriteRepodata(b *testing.B) {
	for _, n := range []int{2000, 20000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			pkgs := benchPackages(b, n)
			dir := b.TempDir()
			opts := RepodataOptions{Time: time.Unix(1795600000, 0)}
			for b.Loop() {
				if err := WriteRepodata(context.Background(), dir, pkgs, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkReadFile(b *testing.B) {
	for b.Loop() {
		if _, err := ReadFile(testRPM); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignFile signs the test rpm with an RSA-3072 and an Ed25519 key
// made by go-crypto.
func BenchmarkSignFile(b *testing.B) {
	for _, k := range []struct {
		name string
		cfg  *packet.Config
	}{
		{"rsa3072", &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 3072}},
		{"ed25519", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA}},
	} {
		b.Run(k.name, func(b *testing.B) {
			ent, err := openpgp.NewEntity("Kiln Bench", "", "bench@example.org", k.cfg)
			if err != nil {
				b.Fatal(err)
			}
			s := testSigner{entity: ent}
			dst := filepath.Join(b.TempDir(), "signed.rpm")
			for b.Loop() {
				if err := SignFile(context.Background(), s, testRPM, dst); err != nil {
					b.Fatal(err)
				}
			}
			if err := os.Remove(dst); err != nil {
				b.Fatal(err)
			}
		})
	}
}
