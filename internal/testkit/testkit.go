// Package testkit is what tests across packages share: deterministic CIDs
// and waiting on a condition (never a sleep as synchronisation). Only
// _test.go files import it.
package testkit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/pinring/pinring/api"
)

// Cid is the i-th test CID: CIDv1 raw of "pin-i", the same in every
// package and run.
func Cid(i int) api.Cid {
	h, err := mh.Sum(fmt.Appendf(nil, "pin-%d", i), mh.SHA2_256, -1)
	if err != nil {
		panic(err) // sha2-256 of a short input cannot fail
	}
	return api.NewCid(cid.NewCidV1(cid.Raw, h))
}

// WaitFor polls cond until it holds, failing the test with what after
// timeout. It polls every 10 ms at first, backing off to every 100 ms, so
// that a quick condition is seen at once and a slow one costs little.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := 10 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(pause)
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// PeerID is the i-th test peer ID: of an Ed25519 key made from i, the same
// in every package and run.
func PeerID(tb testing.TB, i int) peer.ID {
	seed := sha256.Sum256(fmt.Appendf(nil, "peer-%d", i))
	sk, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		tb.Fatal(err)
	}
	pid, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		tb.Fatal(err)
	}
	return pid
}
