package membership

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/p2p"
	"github.com/pinring/pinring/trust"
)

// Ring is this peer's side of membership: it announces the peer on the
// peers topic, records what the others announce in Table, keeps this peer
// (and its kubo) connected to every member, remembers the peers seen in a
// peerstore file and notices when this peer is alone. The peer makes one
// and runs Announce and Watch; every field is set before either runs.
type Ring struct {
	Table   *Table
	Self    peer.ID
	Cluster string
	// Keys check the write-key endorsements peers announce.
	Keys trust.KeySet
	// Member reports whether a peer not endorsed as a writer may be
	// dialled (admitted, or admission is open).
	Member func(peer.ID) bool
	// Me is this peer's identity, made afresh for each announcement.
	Me func(context.Context) api.ID
	// Connect keeps dialling addrs (the libp2p node's reconnect loop);
	// Connected reports a live connection; Keeping counts the peers the
	// node is still trying to reach.
	Connect   func(addrs ...ma.Multiaddr)
	Connected func(peer.ID) bool
	Keeping   func() int
	// Addrs are the addresses a peer is known by (the peerstore's).
	Addrs func(peer.ID) []ma.Multiaddr
	// KuboID is this peer's kubo identity (cached); DialKubo asks this
	// peer's kubo to connect to addrs; KuboPeers lists whom it is
	// connected to.
	KuboID    func() api.IPFSID
	DialKubo  func(ctx context.Context, addrs ...ma.Multiaddr) error
	KuboPeers func(ctx context.Context) ([]peer.ID, error)
	// Peerstore is the file the peers seen are remembered in.
	Peerstore string
	// AskPeers asks a connected peer for the peers it knows (the peers
	// protocol: only a writer answers, proving it is one); Peers lists
	// the peers connected now. Nil AskPeers: this peer learns the ring
	// from announcements only.
	AskPeers func(ctx context.Context, pid peer.ID) ([]json.RawMessage, error)
	Peers    func() []peer.ID
	// Reported is the ring's size as the writers count it (their
	// heartbeats), nil: none. A follower's table misses the members
	// that joined since it learnt the ring (joins go to the writers)
	// until their periodic announcements: the ring is as large as the
	// larger of the two says.
	Reported func() int

	mu    sync.Mutex
	alone bool
	wg    sync.WaitGroup
}

// MaxKept is how many cluster peers a peer keeps dialling (Connect) as
// it hears of them, writers apart: every writer is kept.
const MaxKept = 32

// MaxAnnouncedPeers bounds the cluster peers an announcement lists: in a
// larger ring, the others see only that many of a peer's.
const MaxAnnouncedPeers = 64

// SampledLinks is how many of each of its lists (cluster peers, peers
// connected, kubos connected) a peer announces in a ring of more than
// RingPeers members: `peers ls` and the dashboard's graph then show a
// sample of each peer's links, not all of them.
const SampledLinks = 8

// sample keeps SampledLinks of ids, chosen at random each time (keep
// first, when it is among them), so that the ring sees different links
// over time.
func sample(ids []peer.ID, keep peer.ID) []peer.ID {
	if len(ids) <= SampledLinks {
		return ids
	}
	out := slices.Clone(ids)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	if i := slices.Index(out, keep); keep != "" && i >= SampledLinks {
		out[0], out[i] = out[i], out[0]
	}
	return out[:SampledLinks]
}

// maxRemembered bounds the peerstore file: the most recently seen peers.
const maxRemembered = 200

// Announce announces this peer on the peers topic every interval (its
// first announcement, in a large ring, on the joins topic: writer says
// whether this peer is a writer, which hears it) and records what the
// others announce, until ctx ends.
func (r *Ring) Announce(ctx context.Context, topics Topics, writer bool, interval time.Duration) error {
	settled := make(chan struct{})
	a := Announcements{Topic: topics.Peers, Joins: topics.Joins, Writer: writer, Settled: settled,
		Self: r.Self, Interval: interval, Heard: r.saw, Size: r.members, Me: r.announcement,
		Known: func(pid peer.ID) bool { _, ok := r.Table.Get(pid); return ok }}
	defer r.wg.Wait() // the kubo dials started from what was heard
	if r.AskPeers != nil {
		r.wg.Go(func() {
			r.Learn(ctx, learnEvery)
			close(settled)
		})
	} else {
		close(settled) // the ring is learnt from announcements only
	}
	return a.Run(ctx)
}

// learnEvery is how often Learn tries while no writer has answered.
const learnEvery = 2 * time.Second

// learnAsks bounds the peers one round of Learn asks; a known writer that
// refused is asked again after a minute, another peer that proved it is
// no writer after ten, one that failed otherwise (busy, reset, too slow)
// the next round.
const learnAsks = 4

// Learn asks the peers this one is connected to — the known writers
// first — for the peers they know, learnAsks a round, until a writer
// answers: a newcomer then knows the ring (and keeps MaxKept of it, chosen
// at random) within a round trip, where in a large ring the others no
// longer answer its join. Rounds are every apart while connected writers
// are known and not yet asked, while nobody is connected yet and after a
// round in which a peer failed to answer; otherwise they come further
// apart each time, up to learnBackoff (a writer alone in its ring, or a
// follower while no writer is online, does not keep asking followers).
// It returns when a writer has answered or ctx ends.
func (r *Ring) Learn(ctx context.Context, every time.Duration) {
	asked := map[peer.ID]time.Time{}
	tick := time.NewTicker(every)
	defer tick.Stop()
	wait, next := every, time.Time{}
	for {
		now := time.Now()
		var writers, others []peer.ID
		for _, pid := range r.Peers() {
			writer := r.Table.Writer(pid)
			again := 10 * time.Minute // a peer not known as a writer: most likely not one
			if writer {
				again = time.Minute
			}
			switch at, ok := asked[pid]; {
			case pid == r.Self || ok && now.Sub(at) < again:
			case writer:
				writers = append(writers, pid)
			default:
				others = append(others, pid)
			}
		}
		if len(writers) > 0 || !now.Before(next) {
			rand.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
			busy := false
			for _, pid := range append(writers, others...)[:min(len(writers)+len(others), learnAsks)] {
				asked[pid] = now
				raw, err := r.AskPeers(ctx, pid)
				if err != nil {
					logger.Debugf("asking %s for the ring's peers: %s", pid, err)
					if !errors.Is(err, p2p.ErrNotAWriter) {
						// Busy (a writer answers 4 at once), gone,
						// or too slow: asked again next round —
						// the bootstrap writers are not known as
						// writers yet.
						delete(asked, pid)
						busy = true
					}
					continue
				}
				added, bad := r.learnFrom(ctx, raw)
				logger.Infof("learnt %d peers of the ring from writer %s (%d refused)", added, pid, bad)
				return
			}
			if busy || len(writers)+len(others) == 0 {
				// Nobody to ask yet (not connected), or a
				// writer busy: no reason to wait longer.
				next = now.Add(every)
			} else {
				next, wait = now.Add(wait), min(2*wait, learnBackoff)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// learnBackoff is the longest Learn waits between rounds that find no
// writer.
const learnBackoff = 5 * time.Minute

// learnFrom records the peers a writer passed on, in random order (the
// MaxKept this peer keeps are then a random choice, not every newcomer's
// same first ones), each checked as an announcement is; a peer already
// known keeps what it announced itself. This peer's kubo dials the kubos
// of the peers it keeps, not of the others: their own announcements have
// them dialled in time.
func (r *Ring) learnFrom(ctx context.Context, raw []json.RawMessage) (added, bad int) {
	rand.Shuffle(len(raw), func(i, j int) { raw[i], raw[j] = raw[j], raw[i] })
	now := time.Now()
	keeping := r.Keeping() // counted here, not asked again for each of thousands of entries
	for _, b := range raw {
		if ctx.Err() != nil {
			return
		}
		id, err := CheckRelayed(b)
		if err != nil {
			bad++
			continue
		}
		if id.ID == r.Self || id.Cluster != "" && id.Cluster != r.Cluster {
			continue
		}
		writer := r.Endorsed(id)
		if !r.Table.Add(id, writer, now) {
			continue
		}
		added++
		if writer || r.Member(id.ID) && keeping < MaxKept {
			r.Connect(id.Addresses...)
			keeping++
			// In a large ring the peers kept hear of this one
			// only from its periodic announcements (its join
			// reaches the writers): its kubo dials theirs.
			r.wg.Go(func() { r.ConnectKubo(ctx, id.IPFS) })
		}
	}
	return added, bad
}

// Relay is what this peer, a writer, passes on to a peer that asks for
// the ring's peers: itself and every peer in the table it is connected to
// now (alive, then), each trimmed to who it is and where (no lists of
// links).
func (r *Ring) Relay(ctx context.Context) []api.ID {
	me := r.Me(ctx)
	out := []api.ID{trimmed(me)}
	for _, e := range r.Table.Entries() {
		if e.ID.ID != r.Self && r.Connected(e.ID.ID) {
			out = append(out, trimmed(e.ID))
		}
	}
	return out
}

func trimmed(id api.ID) api.ID {
	id.ClusterPeers, id.ClusterPeersAddresses, id.ConnectedTo, id.IPFSConnectedTo = nil, nil, nil, nil
	Fit(&id)
	return id
}

// announcement is what this peer announces about itself: small, and of a
// size independent of the ring's.
func (r *Ring) announcement(ctx context.Context) api.ID {
	me := r.Me(ctx)
	// Keep announcements small, and their size independent of the
	// ring's: every peer receives every one.
	me.ClusterPeersAddresses = nil
	me.ClusterPeers = me.ClusterPeers[:min(len(me.ClusterPeers), MaxAnnouncedPeers)]
	Fit(&me) // within what the others take
	me.ConnectedTo = r.ConnectedTo()
	me.IPFSConnectedTo = r.KuboLinks(ctx)
	if r.members() > RingPeers {
		// A large ring: every peer decodes every announcement (a
		// peer ID's base58 is most of the cost), so each list is
		// a sample of SampledLinks.
		me.ClusterPeers = sample(me.ClusterPeers, r.Self)
		me.ConnectedTo = sample(me.ConnectedTo, "")
		me.IPFSConnectedTo = sample(me.IPFSConnectedTo, "")
	}
	return me
}

// members counts the peers in the table that are writers or members:
// strangers' announcements do not stretch the announcement interval.
func (r *Ring) members() int {
	n := 0
	for pid, writer := range r.Table.roles() {
		if writer || r.Member == nil || r.Member(pid) {
			n++
		}
	}
	if r.Reported != nil {
		n = max(n, r.Reported())
	}
	return n
}

// saw records an announcement. Seeing a member makes this peer, and its
// kubo, connect to it, so that content flows between them.
func (r *Ring) saw(ctx context.Context, id api.ID) {
	writer := r.Endorsed(id)
	isNew, dial := r.Table.Saw(id, writer, time.Now(), time.Minute)
	// Only members are dialled, by this peer and its kubo: a stranger's
	// announcement (a fresh key, addresses of its choosing) costs a
	// table entry, never a dial loop.
	member := writer || r.Member(id.ID)
	if isNew {
		logger.Infof("cluster peer %s (%s) seen", id.ID, id.Peername)
	}
	if isNew && (writer || member && r.Keeping() < MaxKept) {
		// Stay connected to every writer, and to members until MaxKept
		// peers are kept connected, not only the bootstrap ones: the
		// mesh then survives the loss of any one peer, and what a peer
		// spends on connections does not grow with the ring.
		r.Connect(id.Addresses...)
	}
	if dial && member {
		r.wg.Go(func() { r.ConnectKubo(ctx, id.IPFS) })
	}
}

// Endorsed reports whether id proves the peer holds a write key of this
// cluster.
func (r *Ring) Endorsed(id api.ID) bool {
	if id.WriteKey == "" {
		return false
	}
	k, err := trust.ParsePublicKey(id.WriteKey)
	if err != nil {
		return false
	}
	return r.Keys.CheckEndorsement(r.Cluster, id.ID.String(), k, id.WriteKeyProof)
}

// ConnectKubo asks this peer's kubo to connect to another peer's kubo.
func (r *Ring) ConnectKubo(ctx context.Context, other api.IPFSID) {
	if mine := r.KuboID(); mine.ID == other.ID {
		return // a shared kubo
	}
	suffix, err := ma.NewMultiaddr("/p2p/" + other.ID.String())
	if err != nil {
		return
	}
	var addrs []ma.Multiaddr
	for _, a := range other.Addresses {
		if _, err := a.ValueForProtocol(ma.P_P2P); err == nil {
			addrs = append(addrs, a)
		} else {
			addrs = append(addrs, a.Encapsulate(suffix))
		}
	}
	if len(addrs) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.DialKubo(cctx, addrs...); err != nil {
		logger.Debugf("kubo swarm connect to %s: %s", other.ID, err)
	}
}

// ConnectedTo lists the cluster peers this peer has a connection to.
func (r *Ring) ConnectedTo() []peer.ID {
	var out []peer.ID
	for _, pid := range r.Table.IDs() {
		if r.Connected(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// ConnectedWriters are the /p2p multiaddrs of the writers this peer is
// connected to now.
func (r *Ring) ConnectedWriters() []string {
	out := []string{}
	for _, e := range r.Table.Entries() {
		pid := e.ID.ID
		if !e.Writer || !r.Connected(pid) {
			continue
		}
		for _, a := range r.Addrs(pid) {
			out = append(out, a.Encapsulate(ma.StringCast("/p2p/"+pid.String())).String())
		}
	}
	return out
}

// KuboLinks are the other cluster peers' kubos this peer's kubo is
// connected to (nil when kubo does not answer).
func (r *Ring) KuboLinks(ctx context.Context) []peer.ID {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	swarm, err := r.KuboPeers(ctx)
	if err != nil {
		return nil
	}
	kubos := map[peer.ID]bool{}
	for _, e := range r.Table.Entries() {
		if e.ID.IPFS.ID != "" {
			kubos[e.ID.IPFS.ID] = true
		}
	}
	var out []peer.ID
	for _, id := range swarm {
		if kubos[id] {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return slices.Compact(out) // kubo lists a peer once a connection
}

// SavePeerstore remembers the peers seen in the Peerstore file.
func (r *Ring) SavePeerstore() error {
	return r.Table.Remember(r.Peerstore, maxRemembered)
}

// Alone reports whether this peer found itself with no cluster peer
// connected at its last look (Watch).
func (r *Ring) Alone() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.alone
}

// Watch remembers the peers seen (the peerstore file) and says in the
// log when this peer finds itself alone and when it has company again. It
// looks every interval until ctx ends.
func (r *Ring) Watch(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	started := time.Now()
	for {
		select {
		case <-ctx.Done():
			if err := r.SavePeerstore(); err != nil {
				logger.Warnf("remembering cluster peers: %s", err)
			}
			return
		case <-tick.C:
		}
		if err := r.SavePeerstore(); err != nil {
			logger.Warnf("remembering cluster peers: %s", err)
		}
		n := len(r.ConnectedTo())
		trying := r.Keeping()
		r.mu.Lock()
		wasAlone := r.alone
		// Alone: nobody connected, while there is someone to reach (or
		// after a start-up period, for a peer that knows nobody).
		r.alone = n == 0 && (trying > 0 || time.Since(started) > 3*interval)
		alone := r.alone
		r.mu.Unlock()
		switch {
		case alone && !wasAlone:
			logger.Warnf("alone: no cluster peer is connected; still trying %d known peers (bootstrap, remembered, mDNS); writes are kept and will sync", trying)
		case !alone && wasAlone:
			logger.Infof("connected to the cluster again: %d peers", n)
		}
	}
}
