package membership

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

func TestTable(t *testing.T) {
	tb := New()
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	a := api.ID{ID: peer.ID("a"), Peername: "alpha", IPFS: api.IPFSID{ID: peer.ID("ka")}}
	b := api.ID{ID: peer.ID("b"), Peername: "beta"}
	if isNew, dial := tb.Saw(a, true, t0, time.Minute); !isNew || !dial {
		t.Fatalf("first announcement: new %v, dial kubo %v", isNew, dial)
	}
	if isNew, dial := tb.Saw(a, true, t0.Add(30*time.Second), time.Minute); isNew || dial {
		t.Fatalf("again within a minute: new %v, dial kubo %v", isNew, dial)
	}
	if _, dial := tb.Saw(a, false, t0.Add(2*time.Minute), time.Minute); !dial {
		t.Fatal("a minute later the kubo is dialled again")
	}
	if tb.Writer(a.ID) {
		t.Fatal("the last announcement carried no valid write key")
	}
	if _, dial := tb.Saw(b, true, t0, time.Minute); dial {
		t.Fatal("a peer without a kubo: nothing to dial")
	}
	if !tb.Writer(b.ID) || tb.Peername(a.ID) != "alpha" || tb.Peername("nobody") != "" || tb.Len() != 2 {
		t.Fatalf("writer %v, names %q %q, len %d", tb.Writer(b.ID), tb.Peername(a.ID), tb.Peername("nobody"), tb.Len())
	}
	if ids := tb.IDs(); len(ids) != 2 || ids[0] != a.ID || ids[1] != b.ID {
		t.Fatalf("ids %v", ids)
	}
	es := tb.Entries()
	if len(es) != 2 || !es[0].LastSeen.Equal(t0.Add(2*time.Minute)) || es[1].ID.Peername != "beta" {
		t.Fatalf("entries %+v", es)
	}
}
