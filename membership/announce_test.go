package membership

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// heard records the announcements one peer heard, by peer name.
type heard struct {
	mu    sync.Mutex
	names map[string]api.ID
}

func (h *heard) add(_ context.Context, id api.ID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.names[id.Peername] = id
}

func (h *heard) has(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.names[name]
	return ok
}

// Two peers learn of each other from their announcements; a third, which
// announces itself honestly but also publishes an announcement naming
// another peer and one that is not JSON, is heard only as itself.
func TestAnnouncementsAreHeardOnlyFromThePeerTheyName(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	mn, err := mocknet.FullMeshConnected(3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mn.Close() })
	hs := mn.Hosts()
	topics := make([]*pubsub.Topic, len(hs))
	for i, h := range hs {
		ps, err := pubsub.NewGossipSub(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if topics[i], err = ps.Join("/pinring/test/peers"); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	heards := []*heard{{names: map[string]api.ID{}}, {names: map[string]api.ID{}}}
	for i, name := range []string{"a", "b"} {
		a := Announcements{Topic: topics[i], Self: hs[i].ID(), Interval: 100 * time.Millisecond, Heard: heards[i].add,
			Me: func(context.Context) api.ID { return api.ID{ID: hs[i].ID(), Peername: name} }}
		wg.Go(func() {
			if err := a.Run(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	testkit.WaitFor(t, 10*time.Second, "a and b hear each other", func() bool {
		return heards[0].has("b") && heards[1].has("a")
	})
	liar := topics[2]
	publish := func(v any) {
		b, _ := json.Marshal(v)
		if err := liar.Publish(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	publish(api.ID{ID: hs[0].ID(), Peername: "forged"}) // names a
	if err := liar.Publish(ctx, []byte("not json")); err != nil {
		t.Fatal(err)
	}
	publish(api.ID{ID: hs[2].ID(), Peername: "liar"})
	testkit.WaitFor(t, 10*time.Second, "b hears the liar as itself", func() bool { return heards[1].has("liar") })
	for i, h := range heards {
		if h.has("forged") {
			t.Fatalf("peer %d took an announcement naming a from another peer", i)
		}
	}
	heards[1].mu.Lock()
	defer heards[1].mu.Unlock()
	if id := heards[1].names["a"]; id.ID != hs[0].ID() {
		t.Fatalf("b knows a as %s", id.ID)
	}
}
