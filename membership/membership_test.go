package membership

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
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

// A full table takes no stranger while its strangers were heard lately;
// a writer or a member takes a stranger's place; a stranger takes the
// place of one silent for a minute. Before the bound, every fresh key
// added an entry.
func TestTableIsBounded(t *testing.T) {
	members := map[peer.ID]bool{}
	tb := New()
	tb.Max = 8
	tb.Member = func(p peer.ID) bool { return members[p] }
	t0 := time.Now()
	for i := 1; i <= 100; i++ {
		tb.Saw(api.ID{ID: testkit.PeerID(t, i)}, false, t0, time.Minute)
	}
	if n := tb.Len(); n != 8 {
		t.Fatalf("%d entries after 100 strangers, want 8", n)
	}
	writer, admitted := testkit.PeerID(t, 200), testkit.PeerID(t, 201)
	members[admitted] = true
	if isNew, _ := tb.Saw(api.ID{ID: writer}, true, t0, time.Minute); !isNew {
		t.Fatal("a writer was kept out of a table full of strangers")
	}
	if isNew, _ := tb.Saw(api.ID{ID: admitted}, false, t0, time.Minute); !isNew {
		t.Fatal("an admitted peer was kept out of a table full of strangers")
	}
	late := testkit.PeerID(t, 300)
	if isNew, _ := tb.Saw(api.ID{ID: late}, false, t0.Add(time.Second), time.Minute); isNew {
		t.Fatal("a stranger took the place of a stranger heard a second ago")
	}
	if isNew, _ := tb.Saw(api.ID{ID: late}, false, t0.Add(2*time.Minute), time.Minute); !isNew {
		t.Fatal("a stranger could not take the place of one silent for two minutes")
	}
	if _, ok := tb.Get(writer); !ok || tb.Len() != 8 {
		t.Fatalf("the writer was evicted, or the table holds %d", tb.Len())
	}
}

// Check refuses an announcement that would have the ring dial a target of
// the sender's choosing, or that is out of bounds.
func TestCheckRefusesBadAnnouncements(t *testing.T) {
	self, other := testkit.PeerID(t, 1), testkit.PeerID(t, 2)
	addr := func(pid peer.ID) string { return "/ip4/127.0.0.1/tcp/4001/p2p/" + pid.String() }
	many := make([]string, 33)
	for i := range many {
		many[i] = addr(self)
	}
	for _, tc := range []struct {
		what string
		id   map[string]any
		want string
	}{
		{"another peer's address", map[string]any{"id": self, "addresses": []string{addr(other)}}, "names another peer"},
		{"an address without /p2p", map[string]any{"id": self, "addresses": []string{"/ip4/10.0.0.1/tcp/1"}}, "no /p2p part"},
		{"33 addresses", map[string]any{"id": self, "addresses": many}, "33 addresses"},
		{"a kubo address naming another kubo", map[string]any{"id": self, "ipfs": map[string]any{"id": self, "addresses": []string{addr(other)}}}, "kubo addresses"},
		{"a name with a terminal escape", map[string]any{"id": self, "peername": "a\x1b[2Jb"}, "control characters"},
		{"another peer's announcement", map[string]any{"id": other}, "sent by"},
		{"300 KiB", map[string]any{"id": self, "peername": strings.Repeat("x", 300<<10)}, "at most"},
	} {
		b, _ := json.Marshal(tc.id)
		if _, err := Check(b, self); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.what, err, tc.want)
		}
	}
	b, _ := json.Marshal(map[string]any{"id": self, "peername": "fine", "addresses": []string{addr(self)}})
	if _, err := Check(b, self); err != nil {
		t.Fatalf("a good announcement: %v", err)
	}
}

// A peer's own announcement, however many addresses and connections it
// has, is fitted to what Check takes (else a host with many interfaces
// would be heard by nobody).
func TestFitMakesAnAnnouncementCheckable(t *testing.T) {
	self := testkit.PeerID(t, 1)
	id := api.ID{ID: self, Peername: strings.Repeat("n", 300)}
	for i := range 40 {
		id.Addresses = append(id.Addresses, ma.StringCast(fmt.Sprintf("/ip4/10.0.0.%d/tcp/9096/p2p/%s", i, self)))
	}
	for i := range 5000 {
		id.ConnectedTo = append(id.ConnectedTo, testkit.PeerID(t, 100+i%50))
		id.IPFSConnectedTo = append(id.IPFSConnectedTo, testkit.PeerID(t, 200+i%50))
	}
	b, _ := json.Marshal(id)
	if _, err := Check(b, self); err == nil {
		t.Fatal("an announcement with 40 addresses passed Check unfitted")
	}
	Fit(&id)
	b, _ = json.Marshal(id)
	if _, err := Check(b, self); err != nil {
		t.Fatalf("a fitted announcement: %v", err)
	}
}
