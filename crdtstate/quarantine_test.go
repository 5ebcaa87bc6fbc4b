package crdtstate

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// A record the datastore refuses (a 60 KB key: past Badger's limit), got
// past the API's checks, is quarantined after a few tries: the changes
// after it are stored and announced, it is kept in the quarantine file,
// and a restart does not replay it. Before, the packer retried it for
// ever and every later change stayed unpacked (and unannounced).
func TestPoisonRecordIsQuarantined(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, closeState := openState(t, dir, nil)
	digest, _ := mh.Sum(make([]byte, 60_000), mh.IDENTITY, -1)
	poison := &api.Pin{Cid: api.NewCid(cid.NewCidV1(cid.Raw, digest)), Type: api.DataType, MaxDepth: -1,
		PinOptions: api.PinOptions{ReplicationFactorMin: -1, ReplicationFactorMax: -1}}
	// Past Add's validation, as a bug or another build might let it.
	if err := s.submit(ctx, &op{pin: poison, cid: poison.Cid}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := s.Add(ctx, testPin(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 30*time.Second, "the later changes packed", func() bool { return s.Unpacked() == 0 })
	n, latest, file := s.Quarantine()
	if n != 1 || len(latest) != 1 || !strings.Contains(latest[0].Error, "") || latest[0].Key == "" {
		t.Fatalf("quarantine: %d, %+v", n, latest)
	}
	b, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(b), latest[0].Key[:40]) {
		t.Fatalf("the quarantine file: %v\n%.300s", err, b)
	}
	for i := range 5 {
		if _, err := s.Get(ctx, testPin(t, i).Cid); err != nil {
			t.Fatalf("pin %d after the poison: %v", i, err)
		}
	}
	closeState()
	s2, closeAgain := openState(t, dir, nil)
	defer closeAgain()
	time.Sleep(500 * time.Millisecond)
	if u := s2.Unpacked(); u != 0 {
		t.Fatalf("%d changes replayed after a restart, want none (the poison is quarantined)", u)
	}
	if d, err := s2.Digest(ctx); err != nil || d.Pins != 5 {
		t.Fatalf("after a restart: %+v, %v; want the 5 good pins", d, err)
	}
}
