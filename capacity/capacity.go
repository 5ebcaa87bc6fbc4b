// Package capacity is what a peer knows of the ring's room. Own makes this
// peer's heartbeat figures: kubo's free space, whether it is full (and then
// runs kubo's garbage collection), what a pin takes here, its queue.
// Ledger turns every peer's figures into allocation candidates: each
// peer's room less the pins on their way to it. docs/allocation.md.
package capacity

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/allocate"
	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/pubsubmon"
)

var logger = logging.Logger("capacity")

// Kubo is what Own asks of this peer's kubo.
type Kubo interface {
	RepoStat(ctx context.Context) (api.IPFSRepoStat, error)
	RepoGC(ctx context.Context, removed func(api.Cid)) error
}

// IsFull reports whether a repo is over threshold × StorageMax.
func IsFull(st api.IPFSRepoStat, threshold float64) bool {
	return st.StorageMax > 0 && float64(st.RepoSize) >= threshold*float64(st.StorageMax)
}

// Own makes this peer's capacity figures for its heartbeats.
type Own struct {
	kubo Kubo
	// threshold is the share of StorageMax at which the peer is full;
	// gcWhenFull runs kubo's garbage collection (at most once a minute)
	// while it is.
	threshold  float64
	gcWhenFull bool
	// queue counts this peer's pinned pins and its outstanding operations.
	queue func() Queue

	mu    sync.Mutex
	meter allocate.SizeMeter
	done  atomic.Uint64 // pins completed since start

	fullMu    sync.Mutex
	full      bool
	gcRunning bool
	lastGC    time.Time
	ctx       context.Context
	wg        sync.WaitGroup
}

// NewOwn makes the figures of a peer whose kubo is kubo; its garbage
// collections stop with ctx (Close waits for them).
func NewOwn(ctx context.Context, kubo Kubo, fullThreshold float64, gcWhenFull bool, queue func() Queue) *Own {
	return &Own{ctx: ctx, kubo: kubo, threshold: fullThreshold, gcWhenFull: gcWhenFull, queue: queue}
}

// Queue is what this peer's tracker holds: Pinned pins (as of its last
// recover pass), Queued operations, and Absorbed, the latest write stamp
// (Unix nanoseconds) of a pin allocated here that it took in — read
// before the counts, so that every pin it covers is in them or in kubo.
type Queue struct {
	Pinned, Queued int
	Absorbed       int64
}

// PinDone counts a pin this peer's tracker completed.
func (o *Own) PinDone() { o.done.Add(1) }

// Close waits for a garbage collection under way (cancel NewOwn's ctx
// first).
func (o *Own) Close() { o.wg.Wait() }

// Collect is this peer's heartbeat content besides ping and tags.
func (o *Own) Collect(ctx context.Context) []api.Metric {
	var out []api.Metric
	// The queue is read before kubo: a pin that leaves it for kubo in
	// between is then counted twice (for a moment), never missed.
	if o.queue != nil {
		q := o.queue()
		out = append(out,
			api.Metric{Name: pubsubmon.MetricPinned, Value: strconv.Itoa(q.Pinned)},
			api.Metric{Name: pubsubmon.MetricQueued, Value: strconv.Itoa(q.Queued)})
		if q.Absorbed > 0 {
			out = append(out, api.Metric{Name: pubsubmon.MetricAbsorbed, Value: strconv.FormatInt(q.Absorbed, 10)})
		}
	}
	// The pins counted done before kubo is asked have all grown its
	// repository: counted after, the pins completing during the call would
	// count without their bytes and the size would read small, reserving
	// too little for the pins on their way (seen under load: 400 pins of
	// 1 MiB accepted by 3 × 100 MiB).
	done := o.done.Load()
	if st, err := o.kubo.RepoStat(ctx); err == nil {
		free := uint64(0)
		if st.StorageMax > st.RepoSize {
			free = st.StorageMax - st.RepoSize
		}
		full := IsFull(st, o.threshold)
		o.mu.Lock()
		size, measured := o.meter.Observe(st.RepoSize, done)
		o.mu.Unlock()
		if measured {
			out = append(out, api.Metric{Name: pubsubmon.MetricPinSize, Value: strconv.FormatUint(size, 10)})
		}
		out = append(out, api.Metric{Name: pubsubmon.MetricFreeSpace, Value: strconv.FormatUint(free, 10)},
			api.Metric{Name: pubsubmon.MetricFull, Value: strconv.FormatBool(full)},
			api.Metric{Name: pubsubmon.MetricRepoSize, Value: strconv.FormatUint(st.RepoSize, 10)},
			api.Metric{Name: pubsubmon.MetricRepoMax, Value: strconv.FormatUint(st.StorageMax, 10)})
		o.noteFull(full, st)
	} else {
		logger.Debugf("kubo repo/stat for the freespace metric: %s", err)
	}
	return out
}

// noteFull logs when this peer becomes full or has room again, and while
// it is full runs kubo's garbage collection (at most once a minute) so
// that the pins moved away free their space.
func (o *Own) noteFull(full bool, st api.IPFSRepoStat) {
	o.fullMu.Lock()
	defer o.fullMu.Unlock()
	if full != o.full {
		if full {
			logger.Warnf("full: kubo holds %d of %d bytes (threshold %.0f%%): taking no new pins and asking for some to move", st.RepoSize, st.StorageMax, 100*o.threshold)
		} else {
			logger.Infof("no longer full: kubo holds %d of %d bytes", st.RepoSize, st.StorageMax)
		}
		o.full = full
	}
	if !full || !o.gcWhenFull || o.gcRunning || time.Since(o.lastGC) < time.Minute || o.ctx.Err() != nil {
		return
	}
	o.gcRunning, o.lastGC = true, time.Now()
	o.wg.Go(func() {
		ctx, cancel := context.WithTimeout(o.ctx, 10*time.Minute)
		defer cancel()
		if err := o.kubo.RepoGC(ctx, nil); err != nil {
			logger.Warnf("kubo repo gc while full: %s", err)
		}
		o.fullMu.Lock()
		o.gcRunning = false
		o.fullMu.Unlock()
	})
}

// Metrics are the heartbeats of every peer (pubsubmon.Monitor).
type Metrics interface {
	// Latest is each peer's last metric of that name, valid or not.
	Latest(name string) []api.Metric
	// LatestValid is each peer's last metric of that name still valid.
	LatestValid(name string) []api.Metric
}

// RepoStats are every live peer's kubo repo size and StorageMax, from
// their heartbeats.
func RepoStats(m Metrics) []api.IPFSRepoStat {
	by := map[peer.ID]*api.IPFSRepoStat{}
	get := func(pid peer.ID) *api.IPFSRepoStat {
		if by[pid] == nil {
			by[pid] = &api.IPFSRepoStat{}
		}
		return by[pid]
	}
	for _, mt := range m.LatestValid(pubsubmon.MetricRepoSize) {
		get(mt.Peer).RepoSize, _ = strconv.ParseUint(mt.Value, 10, 64)
	}
	for _, mt := range m.LatestValid(pubsubmon.MetricRepoMax) {
		get(mt.Peer).StorageMax, _ = strconv.ParseUint(mt.Value, 10, 64)
	}
	out := make([]api.IPFSRepoStat, 0, len(by))
	for _, st := range by {
		out = append(out, *st)
	}
	return out
}

// Full are the peers whose valid metrics say they are full.
func Full(m Metrics) map[peer.ID]bool {
	out := map[peer.ID]bool{}
	for _, mt := range m.LatestValid(pubsubmon.MetricFull) {
		if mt.Value == "true" {
			out[mt.Peer] = true
		}
	}
	return out
}

// Ledger counts what this peer allocated to each peer. Those allocated
// after the last pin that peer's heartbeat says its tracker took in (its
// absorbed figure; for a peer that does not say, those from a metric TTL,
// 3 × Interval, before its last heartbeat arrived), with the pins it had
// queued, are the pins on their way to it, which reserve its measured
// size per pin: a heartbeat reflects a pin only once the pin has crossed
// the ring to the peer's tracker, however long that takes, and no longer
// once it has. Those of the last TTL spread a burst. It is safe for
// concurrent use.
type Ledger struct {
	// Interval is the heartbeat interval (monitor.interval); Grace how
	// long a peer whose heartbeats expired still counts (as full:
	// repair.grace); PinSizeEstimate the size of a pin on a peer that
	// measured none.
	Interval, Grace time.Duration
	PinSizeEstimate uint64
	// Allowed says which peers may be allocated pins at all (nil: every
	// peer with a heartbeat); the others are never candidates.
	Allowed func(peer.ID) bool
	// Unverified says which peers passed no audit yet: each takes at most
	// UnverifiedCap replicas (0: no cap), counted as the larger of what
	// its heartbeat says it holds and queues and what this peer allocated
	// to it since start — a peer cannot lie its way past the cap.
	Unverified    func(peer.ID) bool
	UnverifiedCap uint64

	mu    sync.Mutex
	by    map[peer.ID]*allocate.Recent
	given map[peer.ID]uint64
}

// maxOnTheWay is how long an allocation counts as on its way to a peer
// whose heartbeats say it has not taken it in yet: past it, the peer's own
// queue figure is trusted alone (a peer stuck that long is being repaired
// around, and the ledger's memory stays bounded).
const maxOnTheWay = 10 * time.Minute

// maxPending bounds the pins a heartbeat may say are queued at a peer, so
// that a stranger's figure cannot overflow the allocator's arithmetic.
const maxPending = 1 << 40

// Candidates are the peers that may take replicas now: a valid freespace
// metric, with the pins on their way to them (queued at their heartbeat,
// allocated by this peer since) and the size they measured for a pin.
// Peers whose metrics expired less than Grace ago are included as Full:
// they keep what they hold but take nothing new.
func (l *Ledger) Candidates(now time.Time, m Metrics) []allocate.Candidate {
	tags := map[peer.ID]map[string]string{}
	for _, mt := range m.LatestValid(pubsubmon.MetricTags) {
		var t map[string]string
		if json.Unmarshal([]byte(mt.Value), &t) == nil {
			tags[mt.Peer] = t
		}
	}
	figure := func(name string) map[peer.ID]uint64 {
		out := map[peer.ID]uint64{}
		for _, mt := range m.LatestValid(name) {
			if v, err := strconv.ParseUint(mt.Value, 10, 64); err == nil {
				out[mt.Peer] = v
			}
		}
		return out
	}
	queued, sizes, pinned := figure(pubsubmon.MetricQueued), figure(pubsubmon.MetricPinSize), figure(pubsubmon.MetricPinned)
	// The queue figures arrive with the free space they complement only
	// in the same heartbeat: one whose kubo did not answer carries them
	// without it, and a newer absorbed figure beside an older free space
	// would leave out the pins that went from the queue into kubo in
	// between. Those are used only when they came with the free space.
	queuedAt := map[peer.ID]int64{}
	for _, mt := range m.LatestValid(pubsubmon.MetricQueued) {
		queuedAt[mt.Peer] = mt.ReceivedAt
	}
	absorbed := map[peer.ID]int64{}
	absorbedAt := map[peer.ID]int64{}
	for _, mt := range m.LatestValid(pubsubmon.MetricAbsorbed) {
		if v, err := strconv.ParseInt(mt.Value, 10, 64); err == nil && v > 0 {
			absorbed[mt.Peer], absorbedAt[mt.Peer] = v, mt.ReceivedAt
		}
	}
	full := Full(m)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.by == nil {
		l.by = map[peer.ID]*allocate.Recent{}
	}
	var out []allocate.Candidate
	for _, mt := range m.Latest(pubsubmon.MetricFreeSpace) {
		if l.Allowed != nil && !l.Allowed(mt.Peer) {
			continue
		}
		if !mt.Valid {
			if now.Sub(time.Unix(0, mt.Expire)) < l.Grace {
				out = append(out, allocate.Candidate{Peer: mt.Peer, Full: true, Tags: tags[mt.Peer]})
			}
			continue
		}
		free, err := strconv.ParseUint(mt.Value, 10, 64)
		if err != nil {
			continue
		}
		r := l.by[mt.Peer]
		if r == nil {
			r = &allocate.Recent{}
			l.by[mt.Peer] = r
		}
		// The pins on their way are those allocated after the last one
		// the peer said it took in (absorbed: writers' stamps, which are
		// at or after this ledger's allocation times). A peer that says
		// nothing of it gets a window from a TTL before its heartbeat
		// arrived, not before now: a heartbeat misses the pins still
		// crossing the ring when it was measured, and an older heartbeat
		// misses more. The spread of a burst counts that same window for
		// every peer, however fast each takes its pins in.
		ttl := 3 * int64(l.Interval)
		heard := min(now.UnixNano(), mt.ReceivedAt)
		// What the peer has not said it took in is kept however slow
		// the peer is (a tracker far behind a burst, on a loaded
		// machine, is still to pin it all), up to maxOnTheWay.
		forget := now.UnixNano() - 2*ttl
		a, says := absorbed[mt.Peer]
		says = says && absorbedAt[mt.Peer] == mt.ReceivedAt && queuedAt[mt.Peer] == mt.ReceivedAt
		if says {
			forget = max(min(forget, a), now.UnixNano()-int64(maxOnTheWay))
		}
		r.Forget(forget)
		recently := r.Since(heard - ttl)
		onTheWay := recently
		if says {
			onTheWay = r.Since(min(a, heard))
		}
		size, ok := sizes[mt.Peer]
		if !ok {
			size = l.PinSizeEstimate
		}
		closed := ""
		if l.UnverifiedCap > 0 && l.Unverified != nil && l.Unverified(mt.Peer) {
			held := max(l.given[mt.Peer], min(pinned[mt.Peer], maxPending)+min(queued[mt.Peer], maxPending))
			if held >= l.UnverifiedCap {
				closed = fmt.Sprintf("has passed no audit yet and holds %d pins, the most it gets until it does (audit.unverified_cap)", held)
			}
		}
		out = append(out, allocate.Candidate{Peer: mt.Peer, FreeSpace: free,
			Pending: min(queued[mt.Peer], maxPending) + onTheWay, Lately: recently, PinSize: size,
			Full: full[mt.Peer], Closed: closed, Tags: tags[mt.Peer]})
	}
	// Peers the monitor forgot (or that lost their admission) leave the
	// ledger too: it holds no more peers than the monitor's table.
	if len(l.by) > len(out) {
		kept := make(map[peer.ID]bool, len(out))
		for _, c := range out {
			kept[c.Peer] = true
		}
		for pid := range l.by {
			if !kept[pid] {
				delete(l.by, pid)
				delete(l.given, pid)
			}
		}
	}
	return out
}

// Allocated counts allocs (less the peers in current, which hold the pin
// already) as allocated at now.
func (l *Ledger) Allocated(now time.Time, allocs, current []peer.ID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.given == nil {
		l.given = map[peer.ID]uint64{}
	}
	for _, a := range allocs {
		if r := l.by[a]; r != nil && !slices.Contains(current, a) {
			r.Add(now.UnixNano())
			l.given[a]++
		}
	}
}
