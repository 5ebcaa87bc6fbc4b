// Package pubsubmon owns the cluster's metric heartbeats. Every peer
// publishes its metrics (free space, pinned and queued counts, tags, a
// liveness ping) on the gossipsub topic /pinring/<cluster>/metrics every
// interval; gossipsub signs each message with the peer's key and drops any
// whose signature or author does not match. The monitor keeps the latest
// metric per peer and name, treats it as valid for 3 × interval, and raises
// an alert when a peer's ping expires without being renewed. It does not
// decide allocations.
package pubsubmon

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	logging "github.com/ipfs/go-log/v2"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
)

var logger = logging.Logger("pubsubmon")

// Metric names.
const (
	MetricPing      = "ping"
	MetricFreeSpace = "freespace"
	MetricPinned    = "pinned"
	MetricQueued    = "queued"
	MetricFull      = "full" // "true" when the peer is over its fullness threshold
	MetricRepoSize  = "reposize"
	MetricRepoMax   = "storagemax"
	MetricTags      = "tags" // value: JSON object of the peer's tags
	// MetricPinSize is the bytes one pin takes on the peer, as it measured
	// them (its repo's growth per pin pinned); absent until measured.
	MetricPinSize = "pinsize"
	// MetricAbsorbed is the latest write stamp (Unix nanoseconds) of a pin
	// allocated to the peer that its tracker took in: the allocations
	// stamped up to it are in the peer's other figures.
	MetricAbsorbed = "absorbed"
	// MetricEpoch is the epoch of the pinset the peer is in (ADR 9): a
	// writer behind another does not start an epoch of its own.
	MetricEpoch = "epoch"
	// MetricMembers is a writer's count of the ring's members (its peer
	// table). A follower no longer hears every join (they go to the
	// writers), so it sizes the ring by the writers' count
	// (ReportedMembers) as well as by its own table.
	MetricMembers = "members"
)

// maxReportedMembers bounds the ring size a writer's heartbeat may claim.
const maxReportedMembers = 1 << 20

// Config tunes the monitor.
type Config struct {
	// Interval between heartbeats. A metric is valid for 3 × Interval.
	// Default 10s.
	Interval config.Duration `json:"interval"`
	// Tags describe this peer to the allocator (e.g. {"region": "eu"}).
	Tags map[string]string `json:"tags"`
	// MaxPeers bounds the peers whose heartbeats are kept. When it is
	// reached, a new peer takes the place of the one whose heartbeats
	// expired longest ago, or, if it is a member (Deps.Member), of the
	// non-member heard from least recently; otherwise it is not heard.
	// Default 4096.
	MaxPeers int `json:"max_peers"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{Interval: config.Duration(10 * time.Second), Tags: map[string]string{}, MaxPeers: 4096}
}

// Validate checks the config without changing it.
func (c Config) Validate() error {
	if c.Interval < config.Duration(100*time.Millisecond) {
		return config.Errf("monitor.interval", c.Interval.D(), "must be at least 100ms")
	}
	if c.MaxPeers < 2 {
		return config.Errf("monitor.max_peers", c.MaxPeers, "must be at least 2")
	}
	for k := range c.Tags {
		if k == "" {
			return config.Errf("monitor.tags", c.Tags, "tag names must not be empty")
		}
	}
	return nil
}

// TTL is how long a metric stays valid.
func (c Config) TTL() time.Duration { return 3 * c.Interval.D() }

// Deps are the monitor's collaborators.
type Deps struct {
	PubSub *pubsub.PubSub
	Topic  string
	Self   peer.ID
	// Peername is this peer's human name, sent with its heartbeats.
	Peername string
	// Collect returns this peer's metrics for the next heartbeat (names
	// and values; the monitor adds ping and tags and sets expiry).
	Collect func(ctx context.Context) []api.Metric
	// OnAlert is told when a peer's ping expires or a peer leaves. It
	// must not block.
	OnAlert func(api.Alert)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Score, if set, is the topic's gossipsub score parameters.
	Score *pubsub.TopicScoreParams
	// Member reports whether a peer belongs to the ring (a writer, or
	// admitted): members take a full table's places from non-members.
	// nil: nobody is.
	Member func(peer.ID) bool
	// Writer reports whether a peer is a writer (this one included), and
	// Members how many peers the ring has (the peer table). With both
	// set, a follower in a ring of more than QuietPeers members stops
	// hearing other followers' heartbeats (Quiet): it hears the writers'
	// only, on the topic Topic+"/writers", where only writers publish.
	// Every peer still sends its heartbeats on Topic, which the writers
	// (and the followers of a small ring) hear.
	Writer  func(peer.ID) bool
	Members func() int
}

// QuietPeers is the ring size beyond which a follower hears the writers'
// heartbeats only (Deps.Writer, Deps.Members); it hears every peer's
// again when the ring shrinks below three quarters of it. The writers
// are the peers that allocate, repair and audit: they hear everyone.
// Without it every follower receives every follower's heartbeats, and
// what each follower spends on them grows with the ring.
var QuietPeers = 100 // a variable for tests only

// heartbeat is the wire format: one message carries all of a peer's
// metrics.
type heartbeat struct {
	Peer     peer.ID     `json:"peer"`
	Peername string      `json:"peername"`
	TTL      int64       `json:"ttl"` // nanoseconds
	Metrics  []wireValue `json:"metrics"`
	// Leaving says the peer is leaving the cluster for good: its metrics
	// end now, with no grace period, so its pins move at once.
	Leaving bool `json:"leaving,omitempty"`
	// Seq is the sender's clock when it sent the heartbeat (Unix
	// nanoseconds), made to grow: a heartbeat no newer than the last one
	// heard from its peer is a replay, and one older than its TTL plus
	// maxClockSkew is stale. Both are dropped.
	Seq int64 `json:"seq"`
}

type wireValue struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Weight int64  `json:"weight,omitempty"`
}

const (
	maxHeartbeat = 64 << 10
	maxAlerts    = 1000
	maxTTL       = 24 * time.Hour
	// maxClockSkew is how far behind this peer's clock a sender's may be
	// and its heartbeats still count. A heartbeat replayed to a peer that
	// forgot its sender (restarted, or evicted it) keeps the sender alive
	// at most this long after the heartbeat's TTL ran out.
	maxClockSkew = time.Hour
	// minGap is the least time between two heartbeats of one peer that
	// are both recorded (the shortest monitor.interval); more are ignored.
	minGap = 100 * time.Millisecond
)

type peerState struct {
	seq     int64 // the last heartbeat's Seq
	heardAt int64 // when it was recorded (Unix nanoseconds)
	every   int64 // its sender's interval: a third of its TTL (nanoseconds)
	name    string
	metrics map[string]api.Metric
	alerted bool // its ping expired and it was reported
	left    bool // it said it was leaving
	// slack is what Disconnected added to its metrics' expiry for the
	// gossip (disconnectMargin at most): its ping counts as expired from
	// then for alerts, but from when its heartbeat was due for the repair
	// (Dead, NextDeath). Cleared by its next heartbeat.
	slack int64
}

// dueAt is when ps's ping counts as expired for the repair: its expiry,
// less the slack Disconnected gave it.
func (ps *peerState) dueAt(ping api.Metric) int64 { return ping.Expire - ps.slack }

// leftAgo is how far in the past a leaving peer's metrics are made to
// have expired: beyond any repair grace period.
const leftAgo = maxTTL

// Monitor publishes this peer's heartbeats and keeps everyone's.
type Monitor struct {
	cfg     Config
	deps    Deps
	topic   *pubsub.Topic
	writers *pubsub.Topic // Topic+"/writers"

	subMu  sync.Mutex
	allSub *pubsub.Subscription // Topic's; nil while quiet
	subs   sync.WaitGroup       // the receive loops
	quiet  atomic.Bool

	started time.Time // when New was called: see Unheard

	mu      sync.Mutex
	seq     int64 // the last Seq this peer sent
	peers   map[peer.ID]*peerState
	alerts  []api.Alert
	leaving bool // Leave was called: no more heartbeats

	received, expired int64 // heartbeats recorded from others; pings expired
	full              bool  // the table was found full (logged once)

	// greet asks publishLoop for a heartbeat now: a quiet follower that
	// went quiet, or saw a writer join the metrics topic (greetWriters).
	greet chan struct{}

	wg     sync.WaitGroup
	cancel context.CancelFunc
	closed sync.Once
}

// New joins the metrics topic (registering its validator) and starts the
// heartbeat, receive and expiry loops; they stop at Close (or when ctx
// ends; Close is still needed to leave the topic).
func New(ctx context.Context, cfg Config, deps Deps) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.PubSub == nil || deps.Topic == "" || deps.Collect == nil {
		return nil, errors.New("pubsubmon: PubSub, Topic and Collect are required")
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	m := &Monitor{cfg: cfg, deps: deps, peers: map[peer.ID]*peerState{}, started: deps.Now(), greet: make(chan struct{}, 1)}
	wtopic := deps.Topic + "/writers"
	if err := deps.PubSub.RegisterTopicValidator(deps.Topic, m.validate, pubsub.WithValidatorInline(true)); err != nil {
		return nil, fmt.Errorf("metrics topic validator: %w", err)
	}
	if err := deps.PubSub.RegisterTopicValidator(wtopic, m.validateWriter, pubsub.WithValidatorInline(true)); err != nil {
		deps.PubSub.UnregisterTopicValidator(deps.Topic)
		return nil, fmt.Errorf("writers' metrics topic validator: %w", err)
	}
	fail := func(err error) (*Monitor, error) {
		for _, t := range []*pubsub.Topic{m.topic, m.writers} {
			if t != nil {
				t.Close()
			}
		}
		deps.PubSub.UnregisterTopicValidator(deps.Topic)
		deps.PubSub.UnregisterTopicValidator(wtopic)
		return nil, err
	}
	var err error
	if m.topic, err = deps.PubSub.Join(deps.Topic); err != nil {
		return fail(err)
	}
	if m.writers, err = deps.PubSub.Join(wtopic); err != nil {
		return fail(err)
	}
	if deps.Score != nil {
		for _, t := range []*pubsub.Topic{m.topic, m.writers} {
			if err := t.SetScoreParams(deps.Score); err != nil {
				return fail(err)
			}
		}
	}
	// A writer does not hear the writers' topic: the writers' heartbeats
	// reach it on Topic.
	var wsub *pubsub.Subscription
	if !m.isWriter(deps.Self) {
		if wsub, err = m.writers.Subscribe(); err != nil {
			return fail(err)
		}
	}
	// A follower that may go quiet greets the writers that join.
	quietable := deps.Writer != nil && deps.Members != nil && !deps.Writer(deps.Self)
	var events *pubsub.TopicEventHandler
	if quietable {
		if events, err = m.topic.EventHandler(); err != nil {
			if wsub != nil {
				wsub.Cancel()
			}
			return fail(err)
		}
	}
	ctx, m.cancel = context.WithCancel(ctx)
	if err := m.listen(ctx, true); err != nil {
		if events != nil {
			events.Cancel()
		}
		if wsub != nil {
			wsub.Cancel()
		}
		m.cancel()
		return fail(err)
	}
	if wsub != nil {
		m.subs.Add(1)
		go func() {
			defer m.subs.Done()
			defer wsub.Cancel()
			m.receive(ctx, wsub)
		}()
	}
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		m.publishLoop(ctx)
	}()
	go func() {
		defer m.wg.Done()
		m.expiryLoop(ctx)
	}()
	if quietable {
		m.wg.Add(2)
		go func() {
			defer m.wg.Done()
			m.quietLoop(ctx)
		}()
		go func() {
			defer m.wg.Done()
			m.greetWriters(ctx, events)
		}()
	}
	return m, nil
}

func (m *Monitor) isWriter(pid peer.ID) bool { return m.deps.Writer != nil && m.deps.Writer(pid) }

// listen subscribes to Topic (on) or ends the subscription (quiet): a
// quiet monitor forgets the followers it heard, without alerts.
func (m *Monitor) listen(ctx context.Context, on bool) error {
	m.subMu.Lock()
	defer m.subMu.Unlock()
	if on == (m.allSub != nil) {
		return nil
	}
	if !on {
		m.allSub.Cancel()
		m.allSub = nil
		m.quiet.Store(true)
		m.mu.Lock()
		for id := range m.peers {
			if id != m.deps.Self && !m.isWriter(id) {
				delete(m.peers, id)
			}
		}
		m.mu.Unlock()
		logger.Infof("a ring of more than %d peers: hearing the writers' heartbeats only", QuietPeers)
		m.greetNow()
		return nil
	}
	sub, err := m.topic.Subscribe()
	if err != nil {
		return err
	}
	if m.quiet.Swap(false) {
		logger.Infof("a ring of fewer than %d peers: hearing every peer's heartbeats", QuietPeers*3/4)
	}
	m.allSub = sub
	m.subs.Add(1)
	go func() {
		defer m.subs.Done()
		m.receive(ctx, sub)
	}()
	return nil
}

// Quiet reports whether this peer hears the writers' heartbeats only
// (Deps.Writer, Deps.Members).
func (m *Monitor) Quiet() bool { return m.quiet.Load() }

// ReportedMembers is the largest ring size a writer's valid heartbeat
// reports (MetricMembers), 0 without one.
func (m *Monitor) ReportedMembers() int {
	n := 0
	for _, mt := range m.LatestValid(MetricMembers) {
		if !m.isWriter(mt.Peer) {
			continue
		}
		if v, err := strconv.Atoi(mt.Value); err == nil && v > n {
			n = min(v, maxReportedMembers)
		}
	}
	return n
}

// quietLoop makes a follower quiet when the ring grows beyond QuietPeers
// and makes it listen again when it shrinks below three quarters of it,
// checking every second.
func (m *Monitor) quietLoop(ctx context.Context) {
	every(ctx, time.Second, func() {
		n := max(m.deps.Members(), m.ReportedMembers())
		var err error
		switch {
		case !m.Quiet() && n > QuietPeers:
			err = m.listen(ctx, false)
		case m.Quiet() && n < QuietPeers*3/4:
			err = m.listen(ctx, true)
		}
		if err != nil && ctx.Err() == nil {
			logger.Warnf("metrics topic: %s", err)
		}
	})
}

// every calls fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		fn()
	}
}

// Close stops the loops, waits for them and leaves the topic. It may be
// called more than once.
func (m *Monitor) Close() error {
	m.closed.Do(func() {
		m.cancel()
		m.wg.Wait()
		m.subMu.Lock()
		if m.allSub != nil {
			m.allSub.Cancel()
			m.allSub = nil
		}
		m.subMu.Unlock()
		m.subs.Wait()
		m.topic.Close()
		m.writers.Close()
		m.deps.PubSub.UnregisterTopicValidator(m.deps.Topic)
		m.deps.PubSub.UnregisterTopicValidator(m.deps.Topic + "/writers")
	})
	return nil
}

// validate accepts a heartbeat only from the peer it describes (the
// author gossipsub verified) and well-formed within sane limits (else
// rejected: it counts against the sender's gossipsub score), newer than
// the last one of that peer and not stale, not within minGap of the last,
// and from a peer the table has room for (else ignored: not forwarded).
func (m *Monitor) validate(_ context.Context, _ peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	hb, err := decode(msg.Data)
	if err != nil || hb.Peer != msg.GetFrom() {
		return pubsub.ValidationReject
	}
	if hb.Peer == m.deps.Self {
		return pubsub.ValidationAccept
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.admit(hb, m.deps.Now())
}

// validateWriter is validate for the writers' topic: a heartbeat there
// must also be a writer's (else ignored: this peer may not have heard
// its author announce itself yet).
func (m *Monitor) validateWriter(ctx context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	if !m.isWriter(msg.GetFrom()) {
		return pubsub.ValidationIgnore
	}
	return m.validate(ctx, from, msg)
}

// admit decides whether hb may be recorded now, making room for its peer
// if it is new. m.mu must be held.
func (m *Monitor) admit(hb heartbeat, now time.Time) pubsub.ValidationResult {
	// Stale, replayed or overtaken heartbeats are ignored (not forwarded)
	// rather than rejected: an honest relayer may deliver one late (another
	// path was faster, or the clocks disagree), and a rejection would
	// count against its gossipsub score.
	if hb.Seq < now.Add(-time.Duration(hb.TTL)-maxClockSkew).UnixNano() {
		return pubsub.ValidationIgnore // stale or replayed (also no Seq)
	}
	ps := m.peers[hb.Peer]
	switch {
	case ps != nil && hb.Seq <= ps.seq:
		return pubsub.ValidationIgnore // a replay, or overtaken
	case ps != nil && now.UnixNano()-ps.heardAt < int64(minGap) && !hb.Leaving:
		return pubsub.ValidationIgnore
	case ps == nil && len(m.peers) >= m.cfg.MaxPeers && !m.evictFor(hb.Peer, now):
		return pubsub.ValidationIgnore
	}
	return pubsub.ValidationAccept
}

// evictFor makes room for newcomer in a full table: it forgets the peer
// whose ping expired longest ago, or, for a member newcomer, the
// non-member heard from least recently. m.mu must be held.
func (m *Monitor) evictFor(newcomer peer.ID, now time.Time) bool {
	var victim peer.ID
	oldest := now.UnixNano()
	for id, ps := range m.peers {
		exp := ps.metrics[MetricPing].Expire // 0 without a ping
		if id != m.deps.Self && exp <= now.UnixNano() && (victim == "" || exp < oldest) {
			victim, oldest = id, exp
		}
	}
	if victim == "" && m.deps.Member != nil && m.deps.Member(newcomer) {
		oldest = now.UnixNano() + 1
		for id, ps := range m.peers {
			if id != m.deps.Self && ps.heardAt < oldest && !m.deps.Member(id) {
				victim, oldest = id, ps.heardAt
			}
		}
	}
	if victim == "" {
		if !m.full {
			logger.Warnf("the heartbeat table is full (monitor.max_peers = %d): new peers are not heard until some go quiet", m.cfg.MaxPeers)
			m.full = true
		}
		return false
	}
	delete(m.peers, victim)
	return true
}

func decode(b []byte) (heartbeat, error) {
	var hb heartbeat
	if len(b) > maxHeartbeat {
		return hb, errors.New("heartbeat too large")
	}
	if err := json.Unmarshal(b, &hb); err != nil {
		return hb, err
	}
	if hb.TTL <= 0 || time.Duration(hb.TTL) > maxTTL || len(hb.Metrics) > 64 {
		return hb, errors.New("heartbeat out of bounds")
	}
	// Names are logged and shown on terminals.
	if len(hb.Peername) > 255 || strings.ContainsFunc(hb.Peername, unicode.IsControl) {
		return hb, errors.New("peer name too long or with control characters")
	}
	return hb, nil
}

func (m *Monitor) receive(ctx context.Context, sub *pubsub.Subscription) {
	for {
		msg, err := sub.Next(ctx)
		if err != nil {
			return
		}
		if msg.GetFrom() == m.deps.Self {
			continue // recorded when published
		}
		hb, err := decode(msg.Data)
		if err != nil {
			continue // the validator let it through: it cannot happen
		}
		m.take(hb)
	}
}

// take records a validated heartbeat of another peer, checking it again:
// validation ran concurrently for other messages.
func (m *Monitor) take(hb heartbeat) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.admit(hb, m.deps.Now()) != pubsub.ValidationAccept || m.quiet.Load() && !m.isWriter(hb.Peer) {
		return false
	}
	m.recordLocked(hb)
	return true
}

// record stores this peer's own heartbeat.
func (m *Monitor) record(hb heartbeat) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recordLocked(hb)
}

// recordLocked stores a heartbeat's metrics as received now. m.mu must be
// held.
func (m *Monitor) recordLocked(hb heartbeat) {
	now := m.deps.Now()
	exp := now.Add(time.Duration(hb.TTL)).UnixNano()
	ps := m.peers[hb.Peer]
	if ps == nil {
		ps = &peerState{metrics: map[string]api.Metric{}}
		m.peers[hb.Peer] = ps
	}
	ps.seq, ps.heardAt, ps.slack = max(ps.seq, hb.Seq), now.UnixNano(), 0
	ps.every = hb.TTL / 3
	ps.name = hb.Peername
	if hb.Peer != m.deps.Self {
		m.received++
	}
	if hb.Leaving {
		m.markLeft(hb.Peer, ps, now)
		return
	}
	if ps.left {
		logger.Infof("peer %s (%s) is back after leaving", hb.Peer, hb.Peername)
		ps.left, ps.alerted = false, false
	}
	if ps.alerted {
		logger.Infof("peer %s (%s) is back", hb.Peer, hb.Peername)
	}
	ps.alerted = false
	for _, v := range hb.Metrics {
		ps.metrics[v.Name] = api.Metric{Name: v.Name, Peer: hb.Peer, Value: v.Value, Weight: v.Weight,
			Expire: exp, ReceivedAt: now.UnixNano()}
	}
}

// Disconnected tells the monitor that this peer has no connection left
// to pid. A live peer sends its next heartbeat within its interval of the
// last one, and it reaches this peer through others, so pid's metrics now
// expire when that heartbeat is due (plus disconnectMargin, for the
// gossip), at most an interval from now: a
// peer that went with its connections (killed, switched off, its router
// gone) counts as down an interval after, instead of a TTL (three
// intervals) after its last heartbeat, and its pins move repair.grace
// after it was due (Dead: the margin is for alerts). A heartbeat arriving
// meanwhile sets its expiry again, and a peer
// that only dropped this connection keeps sending them.
func (m *Monitor) Disconnected(pid peer.ID) {
	if pid == m.deps.Self {
		return
	}
	now := m.deps.Now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := m.peers[pid]
	if ps == nil || ps.left || ps.every <= 0 {
		return
	}
	// Its next heartbeat is due an interval after its last one arrived
	// (not after the disconnection, which came somewhere in between).
	due := max(now, ps.heardAt+ps.every)
	slack := min(ps.every/4, int64(disconnectMargin))
	if ping, ok := ps.metrics[MetricPing]; ok && ping.Expire > due+slack {
		ps.slack = slack
	}
	for name, mt := range ps.metrics {
		if mt.Expire > due+slack {
			mt.Expire = due + slack
			ps.metrics[name] = mt
		}
	}
}

// WatchDisconnects calls Disconnected for each peer nw loses its last
// connection to.
func (m *Monitor) WatchDisconnects(nw network.Network) {
	nw.Notify(&network.NotifyBundle{DisconnectedF: func(nw network.Network, c network.Conn) {
		if pid := c.RemotePeer(); nw.Connectedness(pid) != network.Connected {
			m.Disconnected(pid)
		}
	}})
}

// disconnectMargin bounds what Disconnected adds to a peer's interval for
// its heartbeat to travel (a quarter of the interval, at most this).
const disconnectMargin = 2 * time.Second

// markLeft ends every metric of a leaving peer as of long ago and raises
// one alert. m.mu must be held.
func (m *Monitor) markLeft(pid peer.ID, ps *peerState, now time.Time) {
	if ps.left {
		return
	}
	gone := now.Add(-leftAgo).UnixNano()
	for n, mt := range ps.metrics {
		mt.Expire = gone
		ps.metrics[n] = mt
	}
	ping := ps.metrics[MetricPing]
	ping.Name, ping.Peer, ping.Expire = MetricPing, pid, gone
	ps.metrics[MetricPing] = ping
	ps.left, ps.alerted = true, true
	if pid == m.deps.Self {
		return
	}
	a := api.Alert{Metric: ping, Peername: ps.name, TriggeredAt: now.UTC(), Left: true}
	m.alerts = append(m.alerts, a)
	if len(m.alerts) > maxAlerts {
		m.alerts = slices.Delete(m.alerts, 0, len(m.alerts)-maxAlerts)
	}
	logger.Warnf("peer %s (%s) left the cluster", pid, ps.name)
	if m.deps.OnAlert != nil {
		go m.deps.OnAlert(a) // m.mu is held
	}
}

// Leave tells the cluster that this peer leaves for good: the others treat
// it as gone at once and move its pins. The heartbeat loop should be
// stopped after it (it would announce the peer again).
func (m *Monitor) Leave(ctx context.Context) error {
	b, err := json.Marshal(heartbeat{Peer: m.deps.Self, Peername: m.deps.Peername, TTL: 1, Leaving: true, Seq: m.nextSeq()})
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.leaving = true
	m.mu.Unlock()
	return m.publish(ctx, b)
}

// publish sends a heartbeat of this peer on Topic and, from a writer, on
// the writers' topic too.
func (m *Monitor) publish(ctx context.Context, b []byte) error {
	err := m.topic.Publish(ctx, b)
	if m.isWriter(m.deps.Self) {
		err = errors.Join(err, m.writers.Publish(ctx, b))
	}
	return err
}

// nextSeq is the Seq of the next heartbeat: the clock, or one more than
// the last if the clock went back.
func (m *Monitor) nextSeq() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq = max(m.deps.Now().UnixNano(), m.seq+1)
	return m.seq
}

// RingPeers is the ring size beyond which a peer's heartbeats come
// further apart: monitor.interval × peers heard / RingPeers. Every peer
// receives every heartbeat, so without it what each peer spends on
// heartbeats grows with the ring; with it, the ring sends at most
// RingPeers heartbeats an interval (20 a second by default), and a larger
// ring trades that for a longer TTL: a dead peer is noticed later.
const RingPeers = 200

// Interval is the time between this peer's heartbeats now: the
// configured interval, or longer in a ring of more than RingPeers
// members (Deps.Member; every peer heard when it is nil): strangers'
// heartbeats do not stretch it. A writer's is never stretched (every peer
// hears the writers', and they are few), nor is a quiet follower's (only
// the writers hear it).
func (m *Monitor) Interval() time.Duration {
	if m.isWriter(m.deps.Self) {
		return m.cfg.Interval.D()
	}
	m.mu.Lock()
	n := len(m.peers)
	if m.deps.Member != nil && n > RingPeers {
		n = 0
		for pid := range m.peers {
			if pid == m.deps.Self || m.deps.Member(pid) {
				n++
			}
		}
	}
	m.mu.Unlock()
	return intervalFor(m.cfg.Interval.D(), n)
}

func intervalFor(configured time.Duration, peers int) time.Duration {
	return max(configured, configured*time.Duration(peers)/RingPeers)
}

func (m *Monitor) publishLoop(ctx context.Context) {
	for {
		if err := m.PublishNow(ctx); err != nil && ctx.Err() == nil {
			logger.Debugf("publishing metrics: %s", err)
		}
		next := time.NewTimer(m.Interval())
		select {
		case <-ctx.Done():
			next.Stop()
			return
		case <-next.C:
		case <-m.greet:
			next.Stop()
			// Writers joining together get one heartbeat, a
			// second after the first of them.
			select {
			case <-ctx.Done():
				return
			case <-time.After(greetDelay):
			}
		}
	}
}

// greetDelay is how long a greeting heartbeat waits for more writers to
// join: at most one a greetDelay.
const greetDelay = time.Second

// greetNow has publishLoop send a heartbeat within greetDelay.
func (m *Monitor) greetNow() {
	select {
	case m.greet <- struct{}{}:
	default:
	}
}

// greetWriters sends a heartbeat soon after a writer joins the metrics
// topic while this follower is quiet (a connection to a writer made or
// made again: after a router's reboot, or once a newcomer knows the
// writers). A quiet follower's heartbeats reach only the writers it is
// connected to — the writers' mesh may hold followers not quiet yet, and
// forward it to none of the others — so a newcomer's first heartbeats,
// sent while it was connected to its bootstrap writers only, could leave
// the others without any until the next interval, or, if it went away
// meanwhile, at all. In a small ring nobody greets: every peer would
// answer every join.
func (m *Monitor) greetWriters(ctx context.Context, events *pubsub.TopicEventHandler) {
	defer events.Cancel()
	for {
		ev, err := events.NextPeerEvent(ctx)
		if err != nil {
			return
		}
		if ev.Type == pubsub.PeerJoin && m.Quiet() && m.isWriter(ev.Peer) {
			m.greetNow()
		}
	}
}

// PublishNow collects and publishes this peer's metrics at once.
func (m *Monitor) PublishNow(ctx context.Context) error {
	m.mu.Lock()
	leaving := m.leaving
	m.mu.Unlock()
	if leaving {
		return nil
	}
	hb := heartbeat{Peer: m.deps.Self, Peername: m.deps.Peername, TTL: int64(3 * m.Interval()), Seq: m.nextSeq()}
	hb.Metrics = append(hb.Metrics, wireValue{Name: MetricPing, Value: "1"})
	tags, _ := json.Marshal(m.cfg.Tags)
	hb.Metrics = append(hb.Metrics, wireValue{Name: MetricTags, Value: string(tags)})
	for _, mt := range m.deps.Collect(ctx) {
		hb.Metrics = append(hb.Metrics, wireValue{Name: mt.Name, Value: mt.Value, Weight: mt.Weight})
	}
	if m.isWriter(m.deps.Self) && m.deps.Members != nil {
		hb.Metrics = append(hb.Metrics, wireValue{Name: MetricMembers, Value: strconv.Itoa(m.deps.Members())})
	}
	m.record(hb)
	b, err := json.Marshal(hb)
	if err != nil {
		return err
	}
	return m.publish(ctx, b)
}

func (m *Monitor) expiryLoop(ctx context.Context) {
	every(ctx, max(m.cfg.Interval.D()/2, 50*time.Millisecond), m.checkExpired)
}

// checkExpired raises one alert per peer whose ping expired since its last
// heartbeat.
func (m *Monitor) checkExpired() {
	now := m.deps.Now().UnixNano()
	var raised []api.Alert
	m.mu.Lock()
	for id, ps := range m.peers {
		ping, ok := ps.metrics[MetricPing]
		if !ok || ps.alerted || ping.Expire > now || id == m.deps.Self {
			continue
		}
		ps.alerted = true
		m.expired++
		a := api.Alert{Metric: ping, Peername: ps.name, TriggeredAt: time.Unix(0, now).UTC()}
		m.alerts = append(m.alerts, a)
		if len(m.alerts) > maxAlerts {
			m.alerts = slices.Delete(m.alerts, 0, len(m.alerts)-maxAlerts)
		}
		raised = append(raised, a)
	}
	m.mu.Unlock()
	for _, a := range raised {
		logger.Warnf("peer %s (%s) stopped sending metrics: alert", a.Peer, a.Peername)
		if m.deps.OnAlert != nil {
			m.deps.OnAlert(a)
		}
	}
}

// Latest returns the latest metric called name of every peer, valid or
// not (Valid says which), sorted by peer.
func (m *Monitor) Latest(name string) []api.Metric {
	now := m.deps.Now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []api.Metric
	for _, ps := range m.peers {
		if mt, ok := ps.metrics[name]; ok {
			mt.Valid = mt.Expire > now
			out = append(out, mt)
		}
	}
	slices.SortFunc(out, func(a, b api.Metric) int { return cmp.Compare(a.Peer, b.Peer) })
	return out
}

// LatestValid is Latest without the expired metrics.
func (m *Monitor) LatestValid(name string) []api.Metric {
	return slices.DeleteFunc(m.Latest(name), func(mt api.Metric) bool { return !mt.Valid })
}

// Names lists the metric names seen.
func (m *Monitor) Names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]bool{}
	for _, ps := range m.peers {
		for n := range ps.metrics {
			seen[n] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Alive reports whether pid's ping is valid now.
func (m *Monitor) Alive(pid peer.ID) bool {
	now := m.deps.Now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := m.peers[pid]
	if ps == nil {
		return false
	}
	ping, ok := ps.metrics[MetricPing]
	return ok && ping.Expire > now
}

// DownSince returns when pid's ping expired, or false if it is alive or
// was never seen.
func (m *Monitor) DownSince(pid peer.ID) (time.Time, bool) {
	now := m.deps.Now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := m.peers[pid]
	if ps == nil {
		return time.Time{}, false
	}
	ping, ok := ps.metrics[MetricPing]
	if !ok || ping.Expire > now {
		return time.Time{}, false
	}
	return time.Unix(0, ping.Expire), true
}

// Dead returns the peers whose ping expired at least grace ago; for a peer
// this one lost its connections to (Disconnected), grace counts from when
// its heartbeat was due, not from the gossip's margin after it: its pins
// move at most an interval plus grace after it went.
func (m *Monitor) Dead(grace time.Duration) map[peer.ID]bool {
	cutoff := m.deps.Now().Add(-grace).UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	dead := map[peer.ID]bool{}
	for id, ps := range m.peers {
		if ping, ok := ps.metrics[MetricPing]; ok && ps.dueAt(ping) <= cutoff && id != m.deps.Self {
			dead[id] = true
		}
	}
	return dead
}

// Unheard tells which peers count as dead because this peer has no
// heartbeat of theirs at all: never heard (it started after they died, or
// gossip never brought theirs) or forgotten (evicted from a full table).
// Such a peer counts as dead once this monitor has listened for a
// heartbeat's TTL plus grace, as if its last ping had expired when this
// monitor started; before then Unheard returns nil (no peer counts). The
// answer is a snapshot of who has been heard, taken now.
func (m *Monitor) Unheard(grace time.Duration) func(peer.ID) bool {
	if m.deps.Now().Before(m.unheardFrom(grace)) {
		return nil
	}
	m.mu.Lock()
	heard := make(map[peer.ID]bool, len(m.peers))
	for id, ps := range m.peers {
		if _, ok := ps.metrics[MetricPing]; ok {
			heard[id] = true
		}
	}
	m.mu.Unlock()
	self := m.deps.Self
	return func(pid peer.ID) bool { return pid != self && !heard[pid] }
}

// unheardFrom is when peers never heard from start to count as dead.
func (m *Monitor) unheardFrom(grace time.Duration) time.Time {
	return m.started.Add(3*m.Interval() + grace)
}

// NextDeath is when the next peer not yet dead will count as dead under
// grace if no heartbeat of it arrives before: its ping's expiry plus
// grace, or the moment peers never heard from start to count (Unheard).
// ok is false when no such moment is ahead.
func (m *Monitor) NextDeath(grace time.Duration) (at time.Time, ok bool) {
	now := m.deps.Now()
	cutoff := now.Add(-grace).UnixNano()
	if from := m.unheardFrom(grace); now.Before(from) {
		at, ok = from, true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var next int64
	for id, ps := range m.peers {
		ping, has := ps.metrics[MetricPing]
		if !has || id == m.deps.Self || ps.dueAt(ping) <= cutoff {
			continue
		}
		if due := ps.dueAt(ping); next == 0 || due < next {
			next = due
		}
	}
	if next != 0 {
		if d := time.Unix(0, next).Add(grace); !ok || d.Before(at) {
			at, ok = d, true
		}
	}
	return at, ok
}

// Counts returns how many heartbeats from other peers were received and
// how many peers' pings expired, since start.
func (m *Monitor) Counts() (received, expired int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.received, m.expired
}

// Alerts returns the alerts raised, oldest first (at most the last 1000).
func (m *Monitor) Alerts() []api.Alert {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.alerts)
}
