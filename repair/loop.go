package repair

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/sync/errgroup"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
)

var logger = logging.Logger("repair")

// Config controls re-allocation of lost replicas and pin expiry.
type Config struct {
	// Enabled turns repair on. Default true.
	Enabled bool `json:"enabled"`
	// Grace is how long a peer's metrics must stay expired before its
	// pins are re-allocated. Default 1m.
	Grace config.Duration `json:"grace"`
	// Interval is how often the peer checks for work. Default 10s.
	Interval config.Duration `json:"interval"`
	// ExpiryInterval is how often expired pins are looked for. Default 1m.
	ExpiryInterval config.Duration `json:"expiry_interval"`
	// RebalanceBatch is how many pins, at most, this peer moves off each
	// full peer per pass (for the CIDs it is in charge of), so that the
	// cluster never thrashes. 0 disables rebalancing. Default 16.
	RebalanceBatch int `json:"rebalance_batch"`
}

// DefaultConfig is the default repair section.
func DefaultConfig() Config {
	return Config{Enabled: true, Grace: config.Duration(time.Minute),
		Interval: config.Duration(10 * time.Second), ExpiryInterval: config.Duration(time.Minute), RebalanceBatch: 16}
}

// Validate checks the config without changing it.
func (c Config) Validate() error {
	var errs []error
	if c.RebalanceBatch < 0 {
		errs = append(errs, config.Errf("repair.rebalance_batch", c.RebalanceBatch, "must not be negative"))
	}
	if c.Grace < 0 {
		errs = append(errs, config.Errf("repair.grace", c.Grace.D(), "must not be negative"))
	}
	if c.Interval <= 0 {
		errs = append(errs, config.Errf("repair.interval", c.Interval.D(), "must be positive"))
	}
	if c.ExpiryInterval <= 0 {
		errs = append(errs, config.Errf("repair.expiry_interval", c.ExpiryInterval.D(), "must be positive"))
	}
	return errors.Join(errs...)
}

// Cluster is what the loop needs of the peer it runs in. Its methods are
// called from the loop's goroutine only.
type Cluster interface {
	// Self is this peer.
	Self() peer.ID
	// Pins calls fn for every pin of the pinset.
	Pins(ctx context.Context, fn func(api.Pin) error) error
	// Live are the peers that may repair: this one and every writer whose
	// heartbeats are valid.
	Live() []peer.ID
	// Dead are the peers whose heartbeats expired more than Grace ago;
	// Unheard, when not nil, tells which other peers count as dead for
	// want of any heartbeat (pubsubmon.Monitor.Unheard); NextDeath is when
	// the next peer will count as dead.
	Dead() map[peer.ID]bool
	Unheard() func(peer.ID) bool
	NextDeath() (time.Time, bool)
	// Full are the peers whose heartbeats say they are full.
	Full() map[peer.ID]bool
	// Room are the peers that can take a pin now.
	Room() []peer.ID
	// Allocate picks the peers for pin, keeping keep.
	Allocate(pin *api.Pin, keep, avoid []peer.ID) ([]peer.ID, error)
	// Failed are the replicas that failed their audits too often, by CID
	// key: they move as a dead peer's do, to other peers.
	Failed() map[string][]peer.ID
	// Write records pin in the pinset, durably.
	Write(ctx context.Context, pin *api.Pin) error
	// Remove removes c from the pinset (a missing pin is no error).
	Remove(ctx context.Context, c api.Cid) error
	// RepairErasure moves the shards of erasure-coded files off the peers
	// lost says are gone; unfinished says some could not be, and should
	// be tried again.
	RepairErasure(ctx context.Context, lost func(peer.ID) bool) (unfinished bool)
}

// Loop re-allocates pins whose peers are gone (heartbeats expired for
// longer than Grace) and pins below their replication factor when capacity
// appears, moves some pins off full peers, and removes expired pins — for
// the CIDs this peer is in charge of (InCharge). Its Watch, fed every
// change of the pinset, spares it walks that would find nothing.
type Loop struct {
	cfg   Config
	c     Cluster
	now   func() time.Time
	kick  chan struct{}
	Watch Watch
}

// NewLoop makes a loop; Run runs it.
func NewLoop(cfg Config, c Cluster) *Loop {
	return &Loop{cfg: cfg, c: c, now: time.Now, kick: make(chan struct{}, 1)}
}

// Kick has the loop look for work now (a peer left).
func (l *Loop) Kick() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Run runs passes until ctx ends.
func (l *Loop) Run(ctx context.Context) {
	tick := time.NewTicker(l.cfg.Interval.D())
	defer tick.Stop()
	expiry := time.NewTicker(l.cfg.ExpiryInterval.D())
	defer expiry.Stop()
	var lastRoom, lastDead []peer.ID
	var lastFailed map[string][]peer.ID
	var lastUnheard bool // peers never heard from counted as dead
	var lastPass time.Time
	var retryErasure bool // the last erasure repair left work undone
	if err := l.survey(ctx); err != nil && ctx.Err() == nil {
		logger.Warnf("surveying the pinset (the first passes walk it instead): %s", err)
	}
	// death fires when the next peer counts as dead, so that its pins
	// move then, not up to Interval later.
	death := time.NewTimer(time.Hour)
	defer death.Stop()
	for {
		death.Reset(time.Hour)
		if at, ok := l.c.NextDeath(); ok {
			death.Reset(time.Until(at) + 10*time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-death.C:
		case <-expiry.C:
			if n, err := l.ExpirePass(ctx); err != nil && ctx.Err() == nil {
				logger.Warnf("expiry pass: %s", err)
			} else if n > 0 {
				logger.Infof("removed %d expired pins", n)
			}
			continue
		case <-tick.C:
		case <-l.kick:
		}
		if !l.cfg.Enabled {
			continue
		}
		dead, unheard := l.c.Dead(), l.c.Unheard()
		deadList := sortedKeys(dead)
		room := l.c.Room()
		slices.Sort(room)
		// A pass walks the whole pinset: only when something changed
		// (who is gone, who can take pins, who is full) or every 5 min.
		failed := l.c.Failed()
		changed := !slices.Equal(room, lastRoom) || !slices.Equal(deadList, lastDead) ||
			!maps.EqualFunc(failed, lastFailed, slices.Equal) || (unheard != nil) != lastUnheard
		if !changed && !retryErasure && len(l.c.Full()) == 0 && l.now().Sub(lastPass) < 5*time.Minute {
			continue
		}
		lastRoom, lastDead, lastFailed, lastPass, lastUnheard = room, deadList, failed, l.now(), unheard != nil
		retryErasure = false
		if len(dead) > 0 || unheard != nil {
			retryErasure = l.c.RepairErasure(ctx, Lost(dead, unheard))
		}
		n, err := l.repairPass(ctx, dead, unheard)
		if err != nil && ctx.Err() == nil {
			logger.Warnf("repair pass: %s", err)
		}
		if n > 0 {
			logger.Infof("repair: re-allocated %d pins", n)
		}
	}
}

func sortedKeys(m map[peer.ID]bool) []peer.ID {
	out := make([]peer.ID, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// survey walks the pinset once, when the loop starts, so that the repair
// and expiry passes know whether they have work. A new peer's pinset is
// empty: it costs nothing, and no pass walks a pinset holding only pins on
// every peer and none expiring.
func (l *Loop) survey(ctx context.Context) error {
	l.Watch.Begin(l.now())
	var soonest time.Time
	found := false
	err := l.each(ctx, func(pin api.Pin) {
		soonest = Earliest(soonest, pin.ExpireAt)
		found = found || Repairable(&pin)
	})
	if err != nil {
		return err
	}
	l.Watch.Surveyed(l.now(), soonest, found)
	return nil
}

// RepairPass walks the pinset once and re-allocates, as the one peer in
// charge of each CID, the pins that have an allocation on a dead peer or
// fewer allocations than their maximum while more peers could take them.
// It returns how many it wrote.
func (l *Loop) RepairPass(ctx context.Context, dead map[peer.ID]bool) (int, error) {
	return l.repairPass(ctx, dead, l.c.Unheard())
}

// Lost is whether a peer counts as gone: dead, or unheard (see
// Cluster.Unheard).
func Lost(dead map[peer.ID]bool, unheard func(peer.ID) bool) func(peer.ID) bool {
	return func(pid peer.ID) bool { return dead[pid] || (unheard != nil && unheard(pid)) }
}

func (l *Loop) repairPass(ctx context.Context, dead map[peer.ID]bool, unheard func(peer.ID) bool) (int, error) {
	if !l.Watch.RepairDue() {
		return 0, nil // every pin is on every peer
	}
	l.Watch.Begin(l.now())
	plan := NewPlan(View{Self: l.c.Self(), Live: l.c.Live(), Dead: dead, Unheard: unheard, Full: l.c.Full(),
		Failed: l.c.Failed(), Room: len(l.c.Room()), RebalanceBatch: l.cfg.RebalanceBatch})
	if err := l.each(ctx, plan.Consider); err != nil {
		return 0, err
	}
	l.Watch.RepairWalked(l.now(), plan.Found)
	// Allocations are decided one after another (each counts the ones
	// before it), and written many at once: each write waits for its
	// durable commit, and concurrent writes share one (group commit).
	var n atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(writesInFlight)
	for _, m := range plan.Moves {
		if gctx.Err() != nil {
			break
		}
		pin := m.Pin
		allocs, err := l.c.Allocate(&pin, m.Keep, m.Avoid)
		if err != nil && !m.Rebalance {
			logger.Debugf("repair %s: %s (stays under-replicated; retried when capacity appears)", pin.Cid, err)
		}
		next, write := Decide(m, allocs, err)
		if !write {
			continue
		}
		pin.Allocations = next
		g.Go(func() error {
			if err := l.c.Write(gctx, &pin); err != nil {
				return err
			}
			n.Add(1)
			return nil
		})
	}
	err := g.Wait()
	return int(n.Load()), err
}

// writesInFlight is how many repair writes are in flight at once.
const writesInFlight = 64

// ExpirePass removes the expired pins this peer is in charge of, and
// returns how many. It walks the pinset only when a pin may have expired
// since the last walk.
func (l *Loop) ExpirePass(ctx context.Context) (int, error) {
	now := l.now()
	if !l.Watch.ExpiryDue(now) {
		return 0, nil
	}
	l.Watch.Begin(now)
	e := NewExpiry(now, l.c.Self(), l.c.Live())
	if err := l.each(ctx, e.Consider); err != nil {
		return 0, err
	}
	n := 0
	for _, c := range e.Remove {
		if err := l.c.Remove(ctx, c); err != nil {
			return n, err
		}
		n++
	}
	l.Watch.ExpiryWalked(l.now(), e.Soonest)
	return n, nil
}

func (l *Loop) each(ctx context.Context, fn func(api.Pin)) error {
	return l.c.Pins(ctx, func(pin api.Pin) error { fn(pin); return nil })
}
