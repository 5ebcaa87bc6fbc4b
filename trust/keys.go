package trust

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/multiformats/go-multibase"
)

// Errors about keys.
var (
	ErrBadPublicKey = errors.New("not a write public key")
	ErrBadKeyFile   = errors.New("not a write key file")
	ErrKeyFileMode  = errors.New("write key file is readable by others")
)

// ed25519PubCodec is the multicodec prefix of an ed25519 public key
// (0xed as a varint), as in did:key.
var ed25519PubCodec = []byte{0xed, 0x01}

// PublicKey is the public half of a write key. Its text form is the
// did:key identifier without the "did:key:" prefix ("z6Mk…").
type PublicKey struct{ k ed25519.PublicKey }

// String is the key's text form, also used as its key ID.
func (p PublicKey) String() string {
	if len(p.k) != ed25519.PublicKeySize {
		return ""
	}
	s, _ := multibase.Encode(multibase.Base58BTC, append(slices.Clone(ed25519PubCodec), p.k...))
	return s
}

// Equal reports whether p and q are the same key.
func (p PublicKey) Equal(q PublicKey) bool { return p.k.Equal(q.k) }

// Verify checks sig over msg.
func (p PublicKey) Verify(msg, sig []byte) bool {
	return len(p.k) == ed25519.PublicKeySize && ed25519.Verify(p.k, msg, sig)
}

// ParsePublicKey reads a key in its text form ("z6Mk…", with or without
// "did:key:").
func ParsePublicKey(s string) (PublicKey, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "did:key:")
	enc, b, err := multibase.Decode(s)
	if err != nil || enc != multibase.Base58BTC {
		return PublicKey{}, fmt.Errorf("%w: %q is not a base58 multibase string (want z6Mk…)", ErrBadPublicKey, s)
	}
	return publicKeyFromBytes(b)
}

func publicKeyFromBytes(b []byte) (PublicKey, error) {
	if len(b) != len(ed25519PubCodec)+ed25519.PublicKeySize || b[0] != ed25519PubCodec[0] || b[1] != ed25519PubCodec[1] {
		return PublicKey{}, fmt.Errorf("%w: want an ed25519 public key", ErrBadPublicKey)
	}
	return PublicKey{k: ed25519.PublicKey(slices.Clone(b[2:]))}, nil
}

func (p PublicKey) bytes() []byte { return append(slices.Clone(ed25519PubCodec), p.k...) }

// WriteKey is a private write key. Its String never shows the secret.
type WriteKey struct {
	priv ed25519.PrivateKey
	pub  PublicKey
}

// NewWriteKey makes a fresh key.
func NewWriteKey() (*WriteKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &WriteKey{priv: priv, pub: PublicKey{k: pub}}, nil
}

// Public is the key's public half.
func (k *WriteKey) Public() PublicKey { return k.pub }

// String names the key by its public half, so that logging a key by
// mistake reveals nothing.
func (k *WriteKey) String() string { return "write key " + k.pub.String() }

// Sign signs msg.
func (k *WriteKey) Sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

const pemType = "PINRING WRITE KEY"

// Save writes the key to path with mode 0600, refusing to replace a file
// unless overwrite is set.
func (k *WriteKey) Save(path string, overwrite bool) error {
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		return err
	}
	b := pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der})
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if overwrite {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// LoadWriteKey reads a key written by Save. A file that others can read
// is refused (like ssh does), so that a leaked copy is noticed.
// fs.ErrNotExist is returned (wrapped) when there is no file.
func LoadWriteKey(path string) (*WriteKey, error) {
	if err := CheckKeyFileMode(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseWriteKey(b, path)
}

// CheckKeyFileMode refuses a secret key file that others than its owner
// may read or write (as ssh does): whoever can read it is this peer, or
// this peer's API. fs.ErrNotExist is returned (wrapped) when there is no
// file.
func CheckKeyFileMode(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %o; run 'chmod 600 %s'", ErrKeyFileMode, path, st.Mode().Perm(), path)
	}
	return nil
}

// ParseWriteKey reads the PEM form written by Save; name is used in errors.
func ParseWriteKey(b []byte, name string) (*WriteKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != pemType {
		return nil, fmt.Errorf("%w: %s has no %q PEM block", ErrBadKeyFile, name, pemType)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadKeyFile, name, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s does not hold an ed25519 key", ErrBadKeyFile, name)
	}
	return &WriteKey{priv: priv, pub: PublicKey{k: priv.Public().(ed25519.PublicKey)}}, nil
}

// IsNotExist reports whether err says a key file is missing.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// KeySet is the set of write public keys a cluster accepts.
type KeySet struct{ keys []PublicKey }

// NewKeySet parses keys in their text form; duplicates are dropped.
func NewKeySet(texts []string) (KeySet, error) {
	var ks KeySet
	for _, s := range texts {
		k, err := ParsePublicKey(s)
		if err != nil {
			return KeySet{}, err
		}
		ks = ks.With(k)
	}
	return ks, nil
}

// With returns the set plus k.
func (ks KeySet) With(k PublicKey) KeySet {
	if ks.Has(k) {
		return ks
	}
	return KeySet{keys: append(slices.Clone(ks.keys), k)}
}

// Has reports whether k is in the set.
func (ks KeySet) Has(k PublicKey) bool {
	return slices.ContainsFunc(ks.keys, k.Equal)
}

// Len is the number of keys.
func (ks KeySet) Len() int { return len(ks.keys) }

// Keys lists the keys in the order they were added.
func (ks KeySet) Keys() []PublicKey { return slices.Clone(ks.keys) }

// Strings lists the keys' text forms.
func (ks KeySet) Strings() []string {
	out := make([]string, len(ks.keys))
	for i, k := range ks.keys {
		out[i] = k.String()
	}
	return out
}
