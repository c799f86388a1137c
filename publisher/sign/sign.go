// Package sign holds the operator's OpenPGP signing key and makes the
// signatures the repositories need: detached (Release.gpg, repomd.xml.asc,
// rpm header signatures) and cleartext (InRelease).
//
// The key is read from an armored private key file the operator exported
// (gpg --export-secret-keys --armor); the publisher never generates keys.
// Nothing here returns the private key: only the public key and fingerprint.
package sign

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// maxKeyFile bounds the key file read into memory; real keys are a few KiB.
const maxKeyFile = 1 << 20

// Config says where the key and its passphrase come from.
type Config struct {
	// KeyFile is an armored OpenPGP private key (transferable secret key).
	KeyFile string
	// PassphraseFile holds the passphrase; one trailing newline is ignored.
	PassphraseFile string
	// PassphraseEnv names an environment variable that holds the passphrase.
	// Used when PassphraseFile is empty.
	PassphraseEnv string
	// Now is the clock used for signature creation times; nil is time.Now.
	Now func() time.Time
}

// Key is an unlocked signing key. It is safe for concurrent use.
type Key struct {
	entity  *openpgp.Entity
	signer  *packet.PrivateKey
	now     func() time.Time
	public  []byte
	keyFile string
}

// Load reads and unlocks the key described by cfg.
func Load(ctx context.Context, cfg Config) (*Key, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.KeyFile == "" {
		return nil, errors.New("no signing key configured: set the key file (--key FILE or signing.key_file)")
	}
	f, err := os.Open(cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("open signing key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read signing key %s: %w", cfg.KeyFile, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("signing key %s is larger than %d bytes: is it really one armored private key?", cfg.KeyFile, maxKeyFile)
	}
	pass, err := passphrase(cfg)
	if err != nil {
		return nil, err
	}
	k, err := Parse(data, pass, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", cfg.KeyFile, err)
	}
	k.keyFile = cfg.KeyFile
	return k, nil
}

func passphrase(cfg Config) ([]byte, error) {
	switch {
	case cfg.PassphraseFile != "":
		b, err := os.ReadFile(cfg.PassphraseFile)
		if err != nil {
			return nil, fmt.Errorf("read passphrase file: %w", err)
		}
		b = bytes.TrimSuffix(b, []byte("\n"))
		b = bytes.TrimSuffix(b, []byte("\r"))
		return b, nil
	case cfg.PassphraseEnv != "":
		v, ok := os.LookupEnv(cfg.PassphraseEnv)
		if !ok {
			return nil, fmt.Errorf("passphrase environment variable %s is not set: export it or use a passphrase file", cfg.PassphraseEnv)
		}
		return []byte(v), nil
	}
	return nil, nil
}

// Parse unlocks an armored private key with passphrase (nil when the key is
// not protected). now is the signing clock; nil means time.Now.
func Parse(armored, passphrase []byte, now func() time.Time) (*Key, error) {
	if now == nil {
		now = time.Now
	}
	list, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(armored))
	if err != nil {
		return nil, fmt.Errorf("not an armored OpenPGP key (export it with gpg --export-secret-keys --armor): %w", err)
	}
	if len(list) != 1 {
		return nil, fmt.Errorf("the file holds %d keys; keep exactly one signing key in it", len(list))
	}
	e := list[0]
	if e.PrivateKey == nil {
		return nil, errors.New("the file holds only a public key; export the private key with gpg --export-secret-keys --armor")
	}
	sk, ok := e.SigningKey(now())
	if !ok {
		return nil, fmt.Errorf("key %X has no valid signing (sub)key: it may be expired or revoked", e.PrimaryKey.Fingerprint)
	}
	if sk.PrivateKey == nil || sk.PrivateKey.Dummy() {
		return nil, fmt.Errorf("key %X: the secret part of signing key %X is not in the file (gpg stub); export it from the machine that holds it", e.PrimaryKey.Fingerprint, sk.PublicKey.Fingerprint)
	}
	if sk.PrivateKey.Encrypted {
		if len(passphrase) == 0 {
			return nil, fmt.Errorf("key %X is protected by a passphrase: give it with a passphrase file or environment variable", e.PrimaryKey.Fingerprint)
		}
		if err := sk.PrivateKey.Decrypt(passphrase); err != nil {
			return nil, fmt.Errorf("key %X: wrong passphrase: %w", e.PrimaryKey.Fingerprint, err)
		}
	}
	var pub bytes.Buffer
	w, err := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, fmt.Errorf("armor public key: %w", err)
	}
	if err := e.Serialize(w); err != nil {
		return nil, fmt.Errorf("serialize public key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("armor public key: %w", err)
	}
	pub.WriteByte('\n')
	return &Key{entity: e, signer: sk.PrivateKey, now: now, public: pub.Bytes()}, nil
}

func (k *Key) config() *packet.Config {
	off := false
	hash := crypto.SHA512
	return &packet.Config{
		DefaultHash:                           hash,
		Time:                                  k.now,
		SigningKeyId:                          k.signer.KeyId,
		NonDeterministicSignaturesViaNotation: &off,
	}
}

// ctxReader stops a long read when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// DetachSign returns a detached binary signature over r, armored when
// armored is true (Release.gpg, repomd.xml.asc).
func (k *Key) DetachSign(ctx context.Context, r io.Reader, armored bool) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	var err error
	if armored {
		err = openpgp.ArmoredDetachSign(&out, k.entity, ctxReader{ctx, r}, k.config())
		out.WriteByte('\n')
	} else {
		err = openpgp.DetachSign(&out, k.entity, ctxReader{ctx, r}, k.config())
	}
	if err != nil {
		return nil, fmt.Errorf("detach sign with %s: %w", k.Fingerprint(), err)
	}
	return out.Bytes(), nil
}

// ClearSign returns data cleartext-signed (InRelease).
func (k *Key) ClearSign(ctx context.Context, data []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	w, err := clearsign.Encode(&out, k.signer, k.config())
	if err != nil {
		return nil, fmt.Errorf("clear sign with %s: %w", k.Fingerprint(), err)
	}
	if _, err := w.Write(data); err != nil {
		return nil, fmt.Errorf("clear sign with %s: %w", k.Fingerprint(), err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("clear sign with %s: %w", k.Fingerprint(), err)
	}
	return rearmorWithChecksum(out.Bytes())
}

// rearmorWithChecksum rewrites a cleartext-signed message's signature block
// with the armor CRC-24 line: the clearsign encoder leaves it out, and
// gpgv 2.2 (Debian 12's apt) misreads a block without it when the base64
// needs no padding.
func rearmorWithChecksum(msg []byte) ([]byte, error) {
	block, _ := clearsign.Decode(msg)
	if block == nil {
		return nil, errors.New("clear sign: produced an unreadable message")
	}
	sig, err := io.ReadAll(block.ArmoredSignature.Body)
	if err != nil {
		return nil, fmt.Errorf("clear sign: read signature: %w", err)
	}
	start := bytes.Index(msg, []byte("-----BEGIN PGP SIGNATURE-----"))
	if start < 0 {
		return nil, errors.New("clear sign: no signature block in output")
	}
	out := bytes.NewBuffer(bytes.Clone(msg[:start]))
	w, err := armor.Encode(out, "PGP SIGNATURE", nil)
	if err != nil {
		return nil, fmt.Errorf("clear sign: armor: %w", err)
	}
	if _, err := w.Write(sig); err != nil {
		return nil, fmt.Errorf("clear sign: armor: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("clear sign: armor: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// PublicKey returns the armored public key (primary key, user ids and
// subkeys) to hand to customers, e.g. for apt's signed-by.
func (k *Key) PublicKey() []byte { return bytes.Clone(k.public) }

// Fingerprint returns the primary key's fingerprint in upper-case hex.
func (k *Key) Fingerprint() string {
	return strings.ToUpper(fmt.Sprintf("%x", k.entity.PrimaryKey.Fingerprint))
}

// SigningKeyID returns the key id of the (sub)key that makes signatures, in
// upper-case hex (what rpm and gpg show as the signer).
func (k *Key) SigningKeyID() string { return fmt.Sprintf("%016X", k.signer.KeyId) }

// Algorithm names the signing key's public-key algorithm, e.g. "rsa" or
// "eddsa".
func (k *Key) Algorithm() string {
	switch k.signer.PubKeyAlgo {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSASignOnly:
		return "rsa"
	case packet.PubKeyAlgoEdDSA, packet.PubKeyAlgoEd25519:
		return "eddsa"
	case packet.PubKeyAlgoECDSA:
		return "ecdsa"
	case packet.PubKeyAlgoDSA:
		return "dsa"
	}
	return fmt.Sprintf("algo-%d", k.signer.PubKeyAlgo)
}
