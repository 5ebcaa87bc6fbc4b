package p2p

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/audit"
)

// A writer audits a peer over the protocol: an honest prover passes; one
// missing a block of the path, or too slow, fails, saying why; a stranger
// cannot audit anyone.
func TestAuditOverTheProtocol(t *testing.T) {
	hs := connectedHosts(t, 3)
	writer, prover, stranger := hs[0], hs[1], hs[2]
	writers := map[peer.ID]bool{writer.ID(): true}
	blocks := map[cid.Cid][]byte{}
	root := &merkledag.ProtoNode{}
	for i := range 8 {
		leaf := merkledag.NewRawNode(fmt.Appendf(nil, "leaf %d", i))
		blocks[leaf.Cid()] = leaf.RawData()
		root.AddNodeLink(fmt.Sprint(i), leaf)
	}
	blocks[root.Cid()] = root.RawData()
	var missing cid.Cid
	var says error // the prover's own answer, when set
	delay := time.Duration(0)
	ServeAudit(context.Background(), prover, proof{prover.ID(), writers}, func(_ context.Context, ch audit.Challenge) ([][]byte, error) {
		time.Sleep(delay)
		if says != nil {
			return nil, says
		}
		return audit.Prove(ch, func(c cid.Cid) ([]byte, error) {
			b, ok := blocks[c]
			if !ok || c.Equals(missing) {
				return nil, errors.New("block was not found locally (offline)")
			}
			return b, nil
		})
	})
	ctx := context.Background()
	challenge := func() audit.Challenge {
		ch := audit.Challenge{Root: root.Cid()}
		rand.Read(ch.Nonce[:])
		return ch
	}
	res := AskAudit(ctx, writer, proof{writer.ID(), writers}, prover.ID(), challenge(), 5*time.Second)
	if res.Err != nil || res.Blocks != 2 {
		t.Fatalf("an honest prover: %+v", res)
	}
	if res := AskAudit(ctx, stranger, proof{stranger.ID(), writers}, prover.ID(), challenge(), 5*time.Second); res.Err == nil || !strings.Contains(res.Err.Error(), "only writers audit") {
		t.Fatalf("a stranger's audit: %+v, want refused", res)
	}
	// Every leaf missing in turn: the audits whose path reaches it fail.
	failed := 0
	for c := range blocks {
		if c.Equals(root.Cid()) {
			continue
		}
		missing = c
		for range 8 {
			if res := AskAudit(ctx, writer, proof{writer.ID(), writers}, prover.ID(), challenge(), 5*time.Second); res.Err != nil {
				if !strings.Contains(res.Err.Error(), "not found locally") {
					t.Fatalf("a prover missing a block: %v", res.Err)
				}
				failed++
			}
		}
	}
	if failed == 0 {
		t.Fatal("no audit caught a prover missing a leaf")
	}
	missing = cid.Undef
	delay = 300 * time.Millisecond
	if res := AskAudit(ctx, writer, proof{writer.ID(), writers}, prover.ID(), challenge(), 100*time.Millisecond); !errors.Is(res.Err, audit.ErrLate) {
		t.Fatalf("a prover slower than the deadline: %+v, want late", res)
	}
	t.Logf("64 audits of a prover missing one of 8 leaves each time: %d failed (expected 8)", failed)

	// A prover still fetching says so, which the auditor can tell from a
	// failed proof; what a prover says reaches logs and terminals with
	// its control characters replaced.
	delay = 0
	says = fmt.Errorf("%w (pinning since 2026-12-05T10:00:00Z)\x1b[2J", audit.ErrFetching)
	res = AskAudit(ctx, writer, proof{writer.ID(), writers}, prover.ID(), challenge(), 5*time.Second)
	if !errors.Is(res.Err, audit.ErrFetching) || !strings.Contains(res.Err.Error(), "pinning since") || strings.Contains(res.Err.Error(), "\x1b") {
		t.Fatalf("a prover still fetching: %+v", res)
	}
	says = errors.New("gone\x07\r\nFAKE LINE")
	res = AskAudit(ctx, writer, proof{writer.ID(), writers}, prover.ID(), challenge(), 5*time.Second)
	if res.Err == nil || errors.Is(res.Err, audit.ErrFetching) || strings.ContainsAny(res.Err.Error(), "\x07\r\n") {
		t.Fatalf("a prover's reason with control characters: %+v", res)
	}
}
