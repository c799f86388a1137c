package rpm

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
)

// Signature header tags.
const (
	sigTagSize            = 1000
	sigTagPGP             = 1002
	sigTagMD5             = 1004
	sigTagGPG             = 1005
	sigTagPGP5            = 1006
	sigTagPayloadSize     = 1007
	sigTagReservedSpace   = 1008
	sigTagDSA             = 267
	sigTagRSA             = 268
	sigTagSHA1            = 269
	sigTagLongSize        = 270
	sigTagLongArchiveSize = 271
	sigTagSHA256          = 273
)

// OpenPGP public key algorithms, as found in a signature packet.
const (
	pkRSA        = 1
	pkRSAEncrypt = 2
	pkRSASign    = 3
	pkDSA        = 17
	pkECDSA      = 19
	pkEdDSA      = 22
	pkEd25519    = 27
	pkEd448      = 28
)

// Signatures says which signatures [SignFile] makes.
type Signatures string

const (
	// HeaderAndPayload makes a header-only and a header+payload signature
	// (what rpmsign --addsign --rpmv3 makes; the zero value means this).
	HeaderAndPayload Signatures = "header+payload"
	// HeaderOnly makes the header-only signature, as rpmsign --addsign does
	// since rpm 4.16: the header's payload digest covers the payload. A
	// package without a payload digest (built by rpm before 4.14) still
	// gets both signatures.
	HeaderOnly Signatures = "header"
)

// payloadDigestTag is RPMTAG_PAYLOADDIGEST in the main header.
const payloadDigestTag = 5092

// ParseSignatures checks a configured signature mode; "" is
// HeaderAndPayload.
func ParseSignatures(s string) (Signatures, error) {
	switch Signatures(s) {
	case "", HeaderAndPayload:
		return HeaderAndPayload, nil
	case HeaderOnly:
		return HeaderOnly, nil
	}
	return "", fmt.Errorf("rpm signatures %q: use %q (header-only and header+payload signatures) or %q (header-only, as rpmsign does since rpm 4.16)", s, HeaderAndPayload, HeaderOnly)
}

// SignFile writes to dst a copy of the rpm at src with a new signature header
// signed by s, with a header-only and a header+payload signature. dst is
// written through a temporary file in its directory and renamed into place,
// so it is either absent, the old file, or complete; dst is not fsynced, the
// caller syncs it before publishing an index that references it. src and
// dst may be the same path.
func SignFile(ctx context.Context, s Signer, src, dst string) error {
	return SignFileWith(ctx, s, src, dst, HeaderAndPayload)
}

// SignFileWith is [SignFile] making the signatures that which says.
func SignFileWith(ctx context.Context, s Signer, src, dst string, which Signatures) (err error) {
	if s == nil {
		return fmt.Errorf("sign rpm %s: no signer", src)
	}
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("sign rpm: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("sign rpm: %w", err)
	}
	return SignReaderAt(ctx, s, f, fi.Size(), src, dst, which)
}

// SignReaderAt is [SignFileWith] reading the rpm of the given size from r
// (an open file, say, that the caller also parsed, so that both see the
// same bytes); name names it in errors.
func SignReaderAt(ctx context.Context, s Signer, r io.ReaderAt, size int64, name, dst string, which Signatures) error {
	if s == nil {
		return fmt.Errorf("sign rpm %s: no signer", name)
	}
	l, err := readLayout(r, size)
	if err != nil {
		return fmt.Errorf("sign rpm %s: %w", name, err)
	}
	payload := io.NewSectionReader(r, l.payloadStart, size-l.payloadStart)
	full := which != HeaderOnly || len(l.main.strings(payloadDigestTag)) == 0
	sigHeader, err := signatureHeader(ctx, s, l, payload, full)
	if err != nil {
		return fmt.Errorf("sign rpm %s: %w", name, err)
	}
	if err := writeRPM(dst, l, sigHeader, payload); err != nil {
		return fmt.Errorf("sign rpm %s: %w", name, err)
	}
	return nil
}

// signatureHeader builds a new signature header for the package laid out in
// l, with payload its payload: digests, sizes, and the header-only and (when
// full) the header+payload signature made by s.
func signatureHeader(ctx context.Context, s Signer, l *layout, payload *io.SectionReader, full bool) ([]byte, error) {
	mainRaw := l.main.raw
	sha1sum := sha1.Sum(mainRaw)
	sha256sum := sha256.Sum256(mainRaw)
	md5h := md5.New()
	md5h.Write(mainRaw)
	total := uint64(len(mainRaw)) + uint64(payload.Size())

	keep := make([]tagValue, 0, 12)
	for _, v := range l.sig.values() {
		switch v.Tag {
		case sigTagSize, sigTagLongSize, sigTagPGP, sigTagGPG, sigTagPGP5, sigTagMD5,
			sigTagReservedSpace, sigTagDSA, sigTagRSA, sigTagSHA1, sigTagSHA256:
			continue
		}
		keep = append(keep, v)
	}
	keep = append(keep,
		stringValue(sigTagSHA1, hex.EncodeToString(sha1sum[:])),
		stringValue(sigTagSHA256, hex.EncodeToString(sha256sum[:])),
	)
	if total < 1<<32 {
		keep = append(keep, int32Value(sigTagSize, uint32(total)))
	} else {
		keep = append(keep, int64Value(sigTagLongSize, total))
	}

	hdrSig, err := s.DetachSign(ctx, bytes.NewReader(mainRaw), false)
	if err != nil {
		return nil, fmt.Errorf("header signature: %w", err)
	}
	algo, err := signatureAlgorithm(hdrSig)
	if err != nil {
		return nil, fmt.Errorf("header signature: %w", err)
	}
	// The header+payload signature reads the payload once, and the MD5
	// digest is taken on the way.
	whole := io.MultiReader(bytes.NewReader(mainRaw), io.TeeReader(io.NewSectionReader(payload, 0, payload.Size()), md5Writer{md5h}))
	var fullSig []byte
	if full {
		fullSig, err = s.DetachSign(ctx, whole, false)
		if err != nil {
			return nil, fmt.Errorf("header+payload signature: %w", err)
		}
	} else if _, err := io.Copy(io.Discard, whole); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	hdrTag, fullTag := uint32(sigTagRSA), uint32(sigTagPGP)
	switch algo {
	case pkRSA, pkRSAEncrypt, pkRSASign:
	case pkDSA, pkECDSA, pkEdDSA, pkEd25519, pkEd448:
		hdrTag, fullTag = sigTagDSA, sigTagGPG
	default:
		return nil, fmt.Errorf("signature uses OpenPGP public key algorithm %d, which rpm cannot verify; use an RSA or EdDSA key", algo)
	}
	keep = append(keep,
		binValue(sigTagMD5, md5h.Sum(nil)),
		binValue(hdrTag, hdrSig),
	)
	if full {
		keep = append(keep, binValue(fullTag, fullSig))
	}
	return buildHeader(tagHeaderSignatures, keep), nil
}

// md5Writer hides everything but Write so that io.Copy does not look for
// ReaderFrom on the hash.
type md5Writer struct{ h hash.Hash }

func (w md5Writer) Write(p []byte) (int, error) { return w.h.Write(p) }

// signatureAlgorithm returns the public key algorithm of a binary OpenPGP
// signature packet (v3, v4, v5 or v6).
func signatureAlgorithm(pkt []byte) (int, error) {
	if len(pkt) < 2 || pkt[0]&0x80 == 0 {
		return 0, errors.New("signer returned no binary OpenPGP packet (armored?)")
	}
	var tag int
	var body []byte
	if pkt[0]&0x40 != 0 { // new format
		tag = int(pkt[0] & 0x3f)
		switch l := pkt[1]; {
		case l < 192:
			body = pkt[2:]
		case l < 224:
			body = pkt[min(3, len(pkt)):]
		case l == 255:
			body = pkt[min(6, len(pkt)):]
		default:
			return 0, errors.New("signature packet with partial body length")
		}
	} else {
		tag = int(pkt[0]>>2) & 0x0f
		switch pkt[0] & 3 {
		case 0:
			body = pkt[2:]
		case 1:
			body = pkt[min(3, len(pkt)):]
		case 2:
			body = pkt[min(5, len(pkt)):]
		default:
			return 0, errors.New("signature packet of indeterminate length")
		}
	}
	if tag != 2 {
		return 0, fmt.Errorf("signer returned OpenPGP packet type %d, want a signature (2)", tag)
	}
	switch {
	case len(body) >= 16 && body[0] == 3:
		return int(body[15]), nil
	case len(body) >= 4 && body[0] >= 4:
		return int(body[2]), nil
	}
	return 0, errors.New("signature packet too short or of unknown version")
}

// writeRPM writes lead, signature header (padded), main header and payload
// to dst through a temporary file renamed into place. It does not fsync:
// the caller syncs before it publishes an index that references dst.
func writeRPM(dst string, l *layout, sigHeader []byte, payload *io.SectionReader) (err error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	tmpName := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+"."+hex.EncodeToString(rnd[:])+".tmp")
	tmp, err := os.OpenFile(tmpName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	// Everything before the payload goes out in one write.
	pad := sigPadding(int64(len(sigHeader)))
	head := make([]byte, 0, len(l.lead)+len(sigHeader)+int(pad)+len(l.main.raw))
	head = append(head, l.lead...)
	head = append(head, sigHeader...)
	head = append(head, make([]byte, pad)...)
	head = append(head, l.main.raw...)
	if _, err := tmp.Write(head); err != nil {
		return fmt.Errorf("write %s: %w", tmpName, err)
	}
	if _, err := io.Copy(tmp, io.NewSectionReader(payload, 0, payload.Size())); err != nil {
		return fmt.Errorf("write %s: %w", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", tmpName, err)
	}
	if err := os.Rename(tmpName, dst); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}
