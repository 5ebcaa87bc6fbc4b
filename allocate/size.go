package allocate

import "time"

// SizeMeter measures what one pin takes on a peer: how much its kubo
// repository grew per pin it pinned, over the readings of its heartbeats.
// Nothing is assumed before the first pin completes: a peer that has
// measured nothing reserves nothing for the pins on their way to it.
//
// The figure is a ratio of decayed sums (bytes grown ÷ pins pinned), so a
// reading over 20,000 pins weighs 20,000 times one over a single pin, and
// older readings fade by Decay each. Pins whose blocks were already in
// kubo grow nothing and count as small; whatever else grows the
// repository between two readings (a user's own `ipfs add`, kubo's
// internal files) counts against the pins, so the figure errs large, and
// kubo's garbage collection shrinking the repository counts as no growth.
// It is not safe for concurrent use.
type SizeMeter struct {
	started     bool
	repo, done  uint64  // the reading the next growth is measured from
	bytes, pins float64 // decayed sums
}

// Decay is how much of the past each new reading keeps.
const Decay = 0.75

// Observe takes a reading — kubo's repository size and how many pins this
// peer has completed since it started (a counter that only grows) — and
// returns the bytes per pin measured so far, and whether any was.
func (m *SizeMeter) Observe(repoSize, pinsDone uint64) (uint64, bool) {
	if !m.started || pinsDone < m.done {
		m.started, m.repo, m.done = true, repoSize, pinsDone
		return m.estimate()
	}
	if pinsDone == m.done {
		// No pin completed: a shrink (garbage collection, unpins) lowers
		// the base, so the next pins are measured from what is there.
		m.repo = min(m.repo, repoSize)
		return m.estimate()
	}
	grew := uint64(0)
	if repoSize > m.repo {
		grew = repoSize - m.repo
	}
	m.bytes = m.bytes*Decay + float64(grew)
	m.pins = m.pins*Decay + float64(pinsDone-m.done)
	m.repo, m.done = repoSize, pinsDone
	return m.estimate()
}

func (m *SizeMeter) estimate() (uint64, bool) {
	if m.pins == 0 {
		return 0, false
	}
	return uint64(m.bytes/m.pins + 0.5), true
}

// Recent counts the allocations one peer made to another over time, in
// buckets of BucketWidth, so that the pins on their way to a peer can be
// told apart from those its heartbeat already counts: what was allocated
// after the last pin it took in (a heartbeat reflects a pin only once the
// pin has crossed the ring and reached the peer's tracker). A bucket
// straddling that instant counts whole: the width is what a burst may
// count twice, so it is kept short (a burst of 40 pins fitted in one
// bucket of 100 ms). Memory: one bucket per width with allocations in it,
// over two metric TTLs, or for a peer behind as long as it is (up to
// capacity's maxOnTheWay). It is not safe for concurrent use.
type Recent struct {
	at []int64 // bucket starts, Unix nanoseconds, ascending
	n  []uint64
}

// BucketWidth is the resolution of Recent.
const BucketWidth = int64(10 * time.Millisecond)

// Add counts one allocation at now (Unix nanoseconds).
func (r *Recent) Add(now int64) {
	b := now - now%BucketWidth
	if k := len(r.at); k > 0 && r.at[k-1] >= b {
		r.n[k-1]++
		return
	}
	r.at, r.n = append(r.at, b), append(r.n, 1)
}

// Since sums the allocations made at or after t (to the bucket).
func (r *Recent) Since(t int64) uint64 {
	var sum uint64
	for i := len(r.at) - 1; i >= 0 && r.at[i]+BucketWidth > t; i-- {
		sum += r.n[i]
	}
	return sum
}

// Forget drops what was allocated before t.
func (r *Recent) Forget(t int64) {
	i := 0
	for i < len(r.at) && r.at[i]+BucketWidth <= t {
		i++
	}
	r.at, r.n = r.at[i:], r.n[i:]
}
