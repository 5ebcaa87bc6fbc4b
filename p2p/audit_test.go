package p2p

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
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

// Strangers holding every audit stream they can open (saying nothing, so
// each stays until Audit.Idle) cannot keep a writer from auditing: the
// writer, known from the peers topic, has slots of its own. Each stranger
// gets Audit.PerPeer streams and all of them Audit.Concurrent; before, 4
// slots were shared by every caller, taken before the writer proof was
// read, and the writer's audits failed as "no answer".
func TestStrangersCannotCrowdOutAudits(t *testing.T) {
	// Real hosts: mocknet's streams ignore deadlines.
	hs := realHosts(t, 6)
	prover, writer, strangers := hs[0], hs[1], hs[2:]
	writers := map[peer.ID]bool{writer.ID(): true}
	leaf := merkledag.NewRawNode([]byte("held"))
	ServeAudit(context.Background(), prover, proof{prover.ID(), writers}, func(_ context.Context, ch audit.Challenge) ([][]byte, error) {
		return audit.Prove(ch, func(c cid.Cid) ([]byte, error) { return leaf.RawData(), nil })
	})
	ctx := context.Background()
	// hold opens a stream from h that says one byte (not a whole frame)
	// and reports whether the prover took it (not reset within 300 ms).
	hold := func(h host.Host) bool {
		s, err := h.NewStream(ctx, prover.ID(), Audit.ID)
		if err != nil {
			return false
		}
		s.Write([]byte{0x05})
		s.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err = s.Read(make([]byte, 1))
		var reset bool
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !strings.Contains(err.Error(), "deadline") {
			reset = true
		}
		return !reset
	}
	held := 0
	for i, h := range strangers[:3] {
		for range Audit.PerPeer + 2 {
			if hold(h) {
				held++
			}
		}
		if got, want := held, min((i+1)*Audit.PerPeer, Audit.Concurrent); got != want {
			t.Fatalf("after %d strangers: %d streams held, want %d", i+1, got, want)
		}
	}
	if hold(strangers[3]) {
		t.Fatal("a stranger got a stream beyond the shared pool")
	}
	// The pool is full: the writer still audits, PerPeer at once.
	var wg sync.WaitGroup
	results := make([]AuditResult, Audit.PerPeer)
	for i := range results {
		wg.Go(func() {
			ch := audit.Challenge{Root: leaf.Cid()}
			rand.Read(ch.Nonce[:])
			results[i] = AskAudit(ctx, writer, proof{writer.ID(), writers}, prover.ID(), ch, 5*time.Second)
		})
	}
	wg.Wait()
	for i, res := range results {
		if res.Err != nil {
			t.Fatalf("writer's audit %d with the pool held by strangers: %v", i, res.Err)
		}
	}
}
