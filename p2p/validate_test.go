package p2p

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/internal/testkit"
)

// A burst of messages longer than gossipsub's default validation queue
// (32) is validated whole, not dropped unseen: a writer of a large ring
// hears every follower's heartbeats, its validators (pubsubmon's) run in
// that queue's workers, and under load — a burst of joins, a bulk pin —
// a follower's only heartbeat before it went away was lost.
func TestABurstIsValidatedNotDropped(t *testing.T) {
	ctx := context.Background()
	nodes, topics := star(t, 2, nil)
	if err := nodes[0].PubSub.RegisterTopicValidator("t", func(context.Context, peer.ID, *pubsub.Message) bool {
		time.Sleep(time.Millisecond) // a validator's work on a busy machine
		return true
	}, pubsub.WithValidatorInline(true)); err != nil {
		t.Fatal(err)
	}
	sub, err := topics[0].Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "the leaf sees the hub on the topic", func() bool {
		return slices.Contains(topics[1].ListPeers(), nodes[0].Host.ID())
	})
	const burst = 400
	go func() {
		for i := range burst { // 20 every 5 ms: within the sender's own queue
			topics[1].Publish(ctx, fmt.Appendf(nil, "m%d", i))
			if i%20 == 19 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	var got atomic.Int64
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for got.Load() < burst {
		msg, err := sub.Next(rctx)
		if err != nil {
			break
		}
		if msg.ReceivedFrom != nodes[0].Host.ID() {
			got.Add(1)
		}
	}
	if n := got.Load(); n != burst {
		t.Fatalf("%d of %d messages of a burst delivered: the rest dropped before validation", n, burst)
	}
}
