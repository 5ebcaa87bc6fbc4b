package p2p

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
	"github.com/pinring/pinring/trust"
)

// A writer's proof checks for the peer it names and no other; a key the
// cluster does not trust, a truncated proof and a read-only peer prove
// nothing.
func TestKeyProofProvesTheWriterAndNoOne(t *testing.T) {
	key, err := trust.NewWriteKey()
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := trust.NewWriteKey()
	trusted, err := trust.NewKeySet([]string{key.Public().String()})
	if err != nil {
		t.Fatal(err)
	}
	self, other := testkit.PeerID(t, 1), testkit.PeerID(t, 2)
	endorsed := func(id api.ID) bool {
		k, err := trust.ParsePublicKey(id.WriteKey)
		return err == nil && trusted.CheckEndorsement("c", id.ID.String(), k, id.WriteKeyProof)
	}
	proof := func(k *trust.WriteKey) KeyProof {
		return KeyProof{Key: k, Cluster: "c", Self: self, Endorsed: endorsed}
	}
	sent := func(k KeyProof) []byte {
		var b bytes.Buffer
		if err := k.Write(&b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	check := func(b []byte, from api.ID) error {
		return proof(key).Check(bufio.NewReader(bytes.NewReader(b)), from.ID)
	}
	good := sent(proof(key))
	if err := check(good, api.ID{ID: self}); err != nil {
		t.Fatalf("the writer's own proof: %v", err)
	}
	if err := check(good, api.ID{ID: other}); err == nil {
		t.Fatal("a proof replayed by another peer was accepted")
	}
	if err := check(sent(proof(stranger)), api.ID{ID: self}); err == nil {
		t.Fatal("a key the cluster does not trust was accepted")
	}
	if err := check(good[:len(good)-5], api.ID{ID: self}); err == nil {
		t.Fatal("a truncated proof was accepted")
	}
	if err := proof(nil).Write(&bytes.Buffer{}); err == nil {
		t.Fatal("a read-only peer wrote a proof")
	}
}
