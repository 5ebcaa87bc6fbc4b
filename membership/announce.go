package membership

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"sync"
	"time"

	logging "github.com/ipfs/go-log/v2"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

var logger = logging.Logger("membership")

// Announcements are what a peer says about itself on the peers topic.
type Announcements struct {
	Topic *pubsub.Topic
	Self  peer.ID
	// Interval between announcements; longer in a ring of more than
	// RingPeers peers (Size).
	Interval time.Duration
	// Size is how many peers the ring has, as this peer knows it (nil:
	// the interval never grows).
	Size func() int
	// Me is this peer's announcement, made afresh each time.
	Me func(context.Context) api.ID
	// Heard is called with each announcement heard from another peer
	// whose sender is the peer it names.
	Heard func(context.Context, api.ID)
	// Known reports whether a peer was heard before (nil: none was): a
	// join of a known peer — a reconnection, a router's reboot, a peer
	// back from sleep — is not answered.
	Known func(peer.ID) bool
	// Joins is the writers' topic (Topics.Joins; nil: none): a follower
	// makes its first announcement there unless it learnt that the ring
	// has RingPeers members or fewer (firstTopic; Settled is closed once
	// a writer told it the ring); a writer (Writer) hears it and
	// announces on Topic.
	Joins   *pubsub.Topic
	Writer  bool
	Settled <-chan struct{}
}

// Run announces this peer every Interval, and at once (at most once a
// second) when a peer not heard before joins the topic, so that a
// newcomer is known, and knows us, within a second instead of an interval
// (in a ring of more than RingPeers members none answer, as the newcomer
// asks a writer instead: joinShare; a known peer reconnecting is answered
// by none: each answer reaches the whole ring); and it passes on what the
// others announce. A follower's first announcement in a ring of more than
// RingPeers members reaches the writers only (Joins: firstTopic). It
// returns when ctx ends.
func (a Announcements) Run(ctx context.Context) error {
	subs := []*pubsub.Topic{a.Topic}
	if a.Writer && a.Joins != nil {
		subs = append(subs, a.Joins)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before Wait
	for _, t := range subs {
		sub, err := t.Subscribe()
		if err != nil {
			return err
		}
		wg.Go(func() { a.hear(ctx, sub) })
	}
	events, err := a.Topic.EventHandler()
	if err != nil {
		return err
	}
	joined := make(chan struct{}, 1)
	wg.Go(func() {
		defer events.Cancel()
		for {
			ev, err := events.NextPeerEvent(ctx)
			if err != nil {
				return
			}
			if ev.Type == pubsub.PeerJoin && (a.Known == nil || !a.Known(ev.Peer)) && a.answers() {
				select {
				case joined <- struct{}{}:
				default:
				}
			}
		}
	})
	topic := a.firstTopic(ctx)
	for {
		select {
		case <-joined: // joins before this announcement: it answers them
		default:
		}
		if b, err := json.Marshal(a.Me(ctx)); err == nil {
			if err := topic.Publish(ctx, b); err != nil && ctx.Err() == nil {
				logger.Debugf("announcing: %s", err)
			}
		}
		last, share := time.Now(), 1.0
		if topic != a.Topic {
			// The others hear of this peer at a time of its own
			// within its first period, not all at once after a
			// mass restart.
			share = 0.5 + rand.Float64()/2
			topic = a.Topic
		}
		if !a.wait(ctx, share, last, joined) {
			return nil
		}
	}
}

// wait waits for the next announcement: share of the period after last,
// the period as it is when due (a newcomer that learns the ring's size
// meanwhile waits as long as the ring's size asks), or a join to answer,
// at least a second after last (peers joining together get one answer a
// second). A join is answered only if the ring is small at the time of
// the answer: a newcomer sees the peers it first connects to join before
// it learns how large the ring is. It reports false when ctx ends.
func (a Announcements) wait(ctx context.Context, share float64, last time.Time, joined <-chan struct{}) bool {
	due := func() time.Duration { return time.Until(last.Add(time.Duration(share * float64(a.period())))) }
	next := time.NewTimer(due())
	defer next.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-next.C:
			if d := due(); d > 0 {
				next.Reset(d)
				continue
			}
			return true
		case <-joined:
			if !a.answers() {
				continue
			}
			select {
			case <-ctx.Done():
				return false
			case <-time.After(time.Until(last.Add(time.Second))):
				if a.answers() {
					return true
				}
			}
		}
	}
}

// answers reports whether this peer answers joins now: while the ring is
// small (joinShare), and, for a follower, once it knows the ring's size
// (Settled).
func (a Announcements) answers() bool {
	if !a.Writer && a.Settled != nil {
		select {
		case <-a.Settled:
		default:
			return false
		}
	}
	return rand.Float64() < joinShare(a.members())
}

// hear passes on what sub delivers from other peers until ctx ends.
func (a Announcements) hear(ctx context.Context, sub *pubsub.Subscription) {
	defer sub.Cancel()
	for {
		msg, err := sub.Next(ctx)
		if err != nil {
			return
		}
		if msg.ReceivedFrom == a.Self && msg.GetFrom() == a.Self {
			continue
		}
		id, ok := msg.ValidatorData.(api.ID) // checked by the Validator
		if !ok {
			if id, err = Check(msg.Data, msg.GetFrom()); err != nil {
				logger.Debugf("ignoring a bad peer announcement from %s: %s", msg.GetFrom(), err)
				continue
			}
		}
		a.Heard(ctx, id)
	}
}

// settleWait bounds how long a follower waits to learn the ring's size,
// then for a writer to hear Joins, before its first announcement (a
// variable for tests).
var settleWait = 10 * time.Second

// firstTopic is where this peer's first announcement goes: Joins for a
// follower that sees a writer subscribed to Joins, unless it learnt
// (Settled) that the ring has RingPeers members or fewer; Topic otherwise
// (a small ring, a writer, or no writer within settleWait: then every
// peer hears it). A newcomer still unanswered after settleWait (the
// writers busy with a burst of joins) counts on a large ring.
func (a Announcements) firstTopic(ctx context.Context) *pubsub.Topic {
	if a.Writer || a.Joins == nil {
		return a.Topic
	}
	wait := time.NewTimer(settleWait)
	defer wait.Stop()
	select {
	case <-a.Settled:
		if a.members() <= RingPeers {
			return a.Topic
		}
	case <-wait.C:
		wait.Reset(settleWait)
	case <-ctx.Done():
		return a.Topic
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for len(a.Joins.ListPeers()) == 0 {
		select {
		case <-tick.C:
		case <-wait.C:
			return a.Topic
		case <-ctx.Done():
			return a.Topic
		}
	}
	return a.Joins
}

// RingPeers is the ring size beyond which a peer's periodic
// announcements come further apart: the interval × members known /
// RingPeers. Every peer receives every announcement (a few KiB each), so
// the ring sends at most RingPeers an interval (2 a second by default),
// fewer beyond LargeRing members. Announcements made
// because a peer joined are not counted: only the peers connected to the
// newcomer make them.
const RingPeers = 20

func (a Announcements) members() int {
	if a.Size == nil {
		return 0
	}
	return a.Size()
}

func (a Announcements) period() time.Duration {
	return periodFor(a.Interval, a.members())
}

// joinShare is the chance that a peer answers a join at once. Every peer
// connected to the newcomer sees it join, and each answer reaches the
// whole ring: in a ring of RingPeers members or fewer all answer; in a
// larger one none do, and a join costs the ring one announcement, the
// newcomer's own, made at once. The newcomer learns the others from a
// writer it is connected to instead (Ring.Learn, the peers protocol: one
// stream), or, with no writer online, from the periodic announcements
// (RingPeers an interval, ring-wide). Answering joins in a large ring
// made each newcomer cost every peer RingPeers announcements to check: 300
// peers joining 20 a second held two cores and the ring never settled.
func joinShare(members int) float64 {
	if members <= RingPeers {
		return 1
	}
	return 0
}

// LargeRing is the ring size beyond which the ring's periodic
// announcements come fewer as it grows: RingPeers an interval × LargeRing
// ÷ members, each peer's at most every maxPeriod. A newcomer learns a large
// ring from a writer (Ring.Learn), deaths are the heartbeats' business, and
// every peer checks every announcement (ed25519 and JSON, ~0.2 ms here): at
// 1,000 members, 2 a second ring-wide cost the ring harness a third of a
// core of its two; 0.28 a second now.
const LargeRing = 100

// maxPeriod bounds the time between a peer's periodic announcements.
const maxPeriod = time.Hour

func periodFor(interval time.Duration, peers int) time.Duration {
	p := max(interval, interval*time.Duration(peers)/RingPeers)
	if peers > LargeRing {
		p = min(p*time.Duration(peers)/LargeRing, maxPeriod)
	}
	return max(p, interval)
}
