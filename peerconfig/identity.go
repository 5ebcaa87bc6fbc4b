package peerconfig

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/trust"
)

// NewIdentity creates an ed25519 peer key in dir (mode 0600).
func NewIdentity(dir string) (crypto.PrivKey, error) {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	b, err := crypto.MarshalPrivateKey(sk)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, IdentityFile), b, 0o600); err != nil {
		return nil, err
	}
	return sk, nil
}

// LoadIdentity reads the peer key from dir.
func LoadIdentity(dir string) (crypto.PrivKey, error) {
	if err := trust.CheckKeyFileMode(filepath.Join(dir, IdentityFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, IdentityFile))
	if err != nil {
		return nil, fmt.Errorf("reading the peer key (run init first?): %w", err)
	}
	sk, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: not a peer key: %w", filepath.Join(dir, IdentityFile), err)
	}
	return sk, nil
}

func validMultiaddr(s string) error {
	_, err := ma.NewMultiaddr(s)
	return err
}
