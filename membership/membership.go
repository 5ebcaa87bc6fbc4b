// Package membership is the table of the cluster peers a peer has heard
// announce themselves: who they are, whether they proved a write key, when
// they were last heard. It is safe for concurrent use; what to do about a
// peer (dial it, dial its kubo) is the caller's.
package membership

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/api"
)

// Entry is what the table knows of one peer.
type Entry struct {
	ID api.ID // as last announced
	// Writer: its announcement carried a valid write key endorsement.
	Writer   bool
	LastSeen time.Time
	// KuboDialled is when this peer's kubo was last asked to connect to
	// the peer's kubo.
	KuboDialled time.Time
}

// Table holds one Entry per peer heard, at most Max.
type Table struct {
	// Max bounds the table: when it is full, a new peer takes the place
	// of the non-member heard from least recently, if it is a member or
	// that peer was not heard for a minute; otherwise it is not recorded.
	Max int
	// Member says which peers belong to the ring (writers always do);
	// nil: only writers.
	Member func(peer.ID) bool

	mu    sync.Mutex
	peers map[peer.ID]*Entry
}

// DefaultMax is New's Max.
const DefaultMax = 4096

// New is an empty table of at most DefaultMax peers.
func New() *Table { return &Table{Max: DefaultMax, peers: map[peer.ID]*Entry{}} }

func (t *Table) member(pid peer.ID, writer bool) bool {
	return writer || (t.Member != nil && t.Member(pid))
}

// evictFor makes room for a newcomer in a full table, and reports whether
// it did. t.mu must be held.
func (t *Table) evictFor(newcomer bool, now time.Time) bool {
	var victim peer.ID
	var oldest time.Time
	for pid, e := range t.peers {
		if t.member(pid, e.Writer) {
			continue
		}
		if victim == "" || e.LastSeen.Before(oldest) {
			victim, oldest = pid, e.LastSeen
		}
	}
	if victim == "" || (!newcomer && now.Sub(oldest) < time.Minute) {
		return false
	}
	delete(t.peers, victim)
	return true
}

// Saw records id, announced at now (writer: it proved a write key). It
// reports whether the peer is new, and whether its kubo should be dialled:
// it has one, and the last dial is older than kuboEvery (the dial is then
// counted as made).
func (t *Table) Saw(id api.ID, writer bool, now time.Time, kuboEvery time.Duration) (isNew, dialKubo bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.peers[id.ID]
	if e == nil && len(t.peers) >= t.Max && !t.evictFor(t.member(id.ID, writer), now) {
		return false, false // full of peers heard lately
	}
	if e == nil {
		e = &Entry{}
		t.peers[id.ID] = e
		isNew = true
	}
	e.ID, e.LastSeen, e.Writer = id, now, writer
	if id.IPFS.ID != "" && now.Sub(e.KuboDialled) > kuboEvery {
		e.KuboDialled, dialKubo = now, true
	}
	return isNew, dialKubo
}

// Add records id, passed on by a writer (the peers protocol), unless its
// peer is in the table already (what it announced itself says more, its
// links among them); it reports whether it was added. Its kubo counts as
// not dialled: the peer's own announcement will have it dialled.
func (t *Table) Add(id api.ID, writer bool, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.peers[id.ID]; ok {
		return false
	}
	if len(t.peers) >= t.Max && !t.evictFor(t.member(id.ID, writer), now) {
		return false
	}
	t.peers[id.ID] = &Entry{ID: id, Writer: writer, LastSeen: now}
	return true
}

// Get is pid's entry.
func (t *Table) Get(pid peer.ID) (Entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.peers[pid]
	if e == nil {
		return Entry{}, false
	}
	return *e, true
}

// Writer reports whether pid proved it holds a write key.
func (t *Table) Writer(pid peer.ID) bool {
	e, ok := t.Get(pid)
	return ok && e.Writer
}

// Peername is the name pid last announced ("" if it never did).
func (t *Table) Peername(pid peer.ID) string {
	e, _ := t.Get(pid)
	return e.ID.Peername
}

// Len is how many peers were heard.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.peers)
}

// IDs are the peers heard, sorted.
func (t *Table) IDs() []peer.ID {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]peer.ID, 0, len(t.peers))
	for pid := range t.peers {
		out = append(out, pid)
	}
	slices.Sort(out)
	return out
}

// roles are the peers heard, each with whether it holds a write key, in
// no order: what counting members needs, without copying and sorting
// every entry as Entries does.
func (t *Table) roles() map[peer.ID]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[peer.ID]bool, len(t.peers))
	for pid, e := range t.peers {
		out[pid] = e.Writer
	}
	return out
}

// Entries are copies of every entry, in the order of their peer IDs
// (as IDs does: by their bytes, not their base58 text, which would cost
// two encodings a comparison).
func (t *Table) Entries() []Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Entry, 0, len(t.peers))
	for _, e := range t.peers {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return cmp.Compare(a.ID.ID, b.ID.ID) })
	return out
}
