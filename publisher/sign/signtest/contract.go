package signtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// DetachSigner makes detached signatures (what rpm header signing needs).
type DetachSigner interface {
	DetachSign(ctx context.Context, r io.Reader, armored bool) ([]byte, error)
}

// Signer is what the publisher signs repositories with: the real key
// (publisher/sign.Key) and the fakes of unit tests.
type Signer interface {
	DetachSigner
	ClearSign(ctx context.Context, data []byte) ([]byte, error)
}

// Verifier checks one implementation's signatures.
type Verifier struct {
	// Detached returns nil when sig is a signature over data.
	Detached func(data, sig []byte) error
	// Clear returns the data a cleartext-signed message carries, or an
	// error when its signature does not hold.
	Clear func(msg []byte) ([]byte, error)
}

// contractData are the texts every signer must sign: a Release file with
// lines that need dash-escaping in a cleartext signature, empty data, and
// data without a final newline.
var contractData = map[string]string{
	"release":       "Origin: Kiln\nLabel: Kiln\nSuite: stable\n- a line that needs dash escaping\nFrom the start\nDate: Thu, 01 Jan 2026 00:00:00 UTC\n",
	"empty":         "",
	"no final line": "Origin: Kiln\nLabel: Kiln",
}

// ContractDetached checks the detached-signature half of the signer
// contract: signatures verify over exactly the data, armored ones are
// text, the whole reader is read, a reader's error and a cancelled
// context are errors, and concurrent use is safe.
func ContractDetached(t *testing.T, s DetachSigner, v Verifier) {
	t.Helper()
	ctx := context.Background()
	t.Run("DetachSign", func(t *testing.T) {
		for name, data := range contractData {
			for _, armored := range []bool{true, false} {
				sig, err := s.DetachSign(ctx, strings.NewReader(data), armored)
				if err != nil {
					t.Fatalf("%s (armored=%v): %v", name, armored, err)
				}
				if err := v.Detached([]byte(data), sig); err != nil {
					t.Errorf("%s (armored=%v): signature does not verify: %v", name, armored, err)
				}
				if err := v.Detached([]byte(data+"x"), sig); err == nil {
					t.Errorf("%s (armored=%v): signature also verifies over other data", name, armored)
				}
				if armored && (!utf8.Valid(sig) || bytes.IndexByte(sig, 0) >= 0) {
					t.Errorf("%s: armored signature is not text: %q", name, sig)
				}
			}
		}
	})
	t.Run("ReadsAll", func(t *testing.T) {
		// Larger than any buffer a signer might read ahead with.
		data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16+1)
		r := &trackingReader{r: bytes.NewReader(data)}
		sig, err := s.DetachSign(ctx, r, false)
		if err != nil {
			t.Fatal(err)
		}
		if !r.eof {
			t.Errorf("DetachSign stopped reading after %d of %d bytes", r.n, len(data))
		}
		if err := v.Detached(data, sig); err != nil {
			t.Errorf("signature over %d bytes does not verify: %v", len(data), err)
		}
	})
	t.Run("ReaderError", func(t *testing.T) {
		boom := errors.New("disk read failed")
		_, err := s.DetachSign(ctx, io.MultiReader(strings.NewReader("start"), errReader{boom}), false)
		if !errors.Is(err, boom) {
			t.Errorf("DetachSign over a failing reader: error %v, want it to wrap %v", err, boom)
		}
	})
	t.Run("CancelledContext", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.DetachSign(cctx, strings.NewReader("x"), true); !errors.Is(err, context.Canceled) {
			t.Errorf("DetachSign with a cancelled context: error %v, want context.Canceled", err)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				data := fmt.Sprintf("data %d\n", i)
				sig, err := s.DetachSign(ctx, strings.NewReader(data), i%2 == 0)
				if err != nil {
					t.Errorf("signer %d: %v", i, err)
					return
				}
				if err := v.Detached([]byte(data), sig); err != nil {
					t.Errorf("signer %d: %v", i, err)
				}
			})
		}
		wg.Wait()
	})
}

// Contract checks the whole signer contract: ContractDetached, and
// cleartext signatures that carry exactly the data and verify.
func Contract(t *testing.T, s Signer, v Verifier) {
	t.Helper()
	ContractDetached(t, s, v)
	ctx := context.Background()
	t.Run("ClearSign", func(t *testing.T) {
		for name, data := range contractData {
			msg, err := s.ClearSign(ctx, []byte(data))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got, err := v.Clear(msg)
			if err != nil {
				t.Errorf("%s: cleartext signature does not verify: %v\n%s", name, err, msg)
				continue
			}
			if string(got) != data {
				t.Errorf("%s: cleartext message carries %q, want %q", name, got, data)
			}
			if i := bytes.Index(msg, []byte("Suite: stable")); i >= 0 {
				tampered := bytes.Clone(msg)
				copy(tampered[i:], "Suite: unstab")
				if _, err := v.Clear(tampered); err == nil {
					t.Errorf("%s: a changed message still verifies", name)
				}
			}
		}
	})
	t.Run("ClearSignCancelledContext", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.ClearSign(cctx, []byte("x")); !errors.Is(err, context.Canceled) {
			t.Errorf("ClearSign with a cancelled context: error %v, want context.Canceled", err)
		}
	})
}

type trackingReader struct {
	r   io.Reader
	n   int
	eof bool
}

func (r *trackingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += n
	if errors.Is(err, io.EOF) {
		r.eof = true
	}
	return n, err
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// Fake is a signer for unit tests that keeps the signer contract without a
// key: a detached signature is "SIG <sha256 of the data>\n", a cleartext
// signature is "CLEARSIGNED <sha256>\n" followed by the data. Verify and
// VerifyClear check them.
type Fake struct{}

// DetachSign implements Signer.
func (Fake) DetachSign(ctx context.Context, r io.Reader, _ bool) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return nil, fmt.Errorf("fake sign: %w", err)
	}
	return []byte("SIG " + hex.EncodeToString(h.Sum(nil)) + "\n"), nil
}

// ClearSign implements Signer.
func (Fake) ClearSign(ctx context.Context, data []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	return append([]byte("CLEARSIGNED "+hex.EncodeToString(sum[:])+"\n"), data...), nil
}

// FakeVerifier checks Fake's signatures.
var FakeVerifier = Verifier{
	Detached: func(data, sig []byte) error {
		sum := sha256.Sum256(data)
		if string(sig) != "SIG "+hex.EncodeToString(sum[:])+"\n" {
			return fmt.Errorf("fake signature %q is not over this data", sig)
		}
		return nil
	},
	Clear: func(msg []byte) ([]byte, error) {
		head, data, ok := bytes.Cut(msg, []byte("\n"))
		sum := sha256.Sum256(data)
		if !ok || string(head) != "CLEARSIGNED "+hex.EncodeToString(sum[:]) {
			return nil, fmt.Errorf("fake cleartext signature %q does not hold", head)
		}
		return data, nil
	},
}
