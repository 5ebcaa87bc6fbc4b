package audit

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pinring/pinring/config"
)

// Config is the audit section: how often a writer audits, and how much.
type Config struct {
	// Interval between two rounds of this writer (each starts at a random
	// point of the interval, so that provers cannot tell when). 0: no
	// rounds (audits only when asked). Default 10m.
	Interval config.Duration `json:"interval"`
	// Sample is how many of the pins this writer is in charge of a round
	// audits (every peer each is allocated to). Default 16.
	Sample int `json:"sample"`
	// Deadline is how long a prover has to answer. Default 10s.
	Deadline config.Duration `json:"deadline"`
	// FailRounds suspends a peer (a revocation by this writer, which
	// moves its pins) once every audit of it failed in that many of this
	// writer's rounds in a row; writers are never suspended. 0: never.
	// Default 3.
	FailRounds int `json:"fail_rounds"`
	// UnverifiedCap is the most replicas a writer allocates to a peer
	// that passed no audit since it was admitted (writers aside); the
	// first audit it passes lifts the cap ring-wide. Rounds audit every
	// such peer that holds a pin. 0: no cap. Default 100.
	UnverifiedCap int `json:"unverified_cap"`
	// Grace is how old a pin's record must be before rounds audit it:
	// the time its holders have to fetch it (a re-allocation writes the
	// record again). Audits asked for by hand ignore it. Default 1h.
	Grace config.Duration `json:"grace"`
	// FetchLimit is how long after a pin's record a holder may answer an
	// audit with "still fetching" (its tracker is pinning it) without
	// failing: a large pin on a slow link takes hours, and a peer that
	// says so forever keeps nothing for longer than this. 0: such an
	// answer fails like any other. Default 24h.
	FetchLimit config.Duration `json:"fetch_limit"`
	// SilenceLimit is how long a peer may answer none of this writer's
	// challenges while its heartbeats arrive before it is suspended (and
	// only after FailRounds such rounds in a row): a router rebooting or
	// a link cut one way for minutes costs nothing, a peer that shuts
	// writers out for hours is treated as one that fails. 0: after
	// FailRounds rounds. Default 2h.
	SilenceLimit config.Duration `json:"silence_limit"`
}

// DefaultConfig is the default audit section.
func DefaultConfig() Config {
	return Config{Interval: config.Duration(10 * time.Minute), Sample: 16, Deadline: config.Duration(10 * time.Second), FailRounds: 3, UnverifiedCap: 100,
		Grace: config.Duration(time.Hour), FetchLimit: config.Duration(24 * time.Hour), SilenceLimit: config.Duration(2 * time.Hour)}
}

// Validate checks the config without changing it.
func (c Config) Validate() error {
	if c.Interval < 0 {
		return config.Errf("audit.interval", c.Interval.D(), "must not be negative (0: no rounds)")
	}
	if c.Sample < 1 {
		return config.Errf("audit.sample", c.Sample, "must be at least 1")
	}
	if c.Grace < 0 {
		return config.Errf("audit.grace", c.Grace.D(), "must not be negative")
	}
	if c.FetchLimit < 0 {
		return config.Errf("audit.fetch_limit", c.FetchLimit.D(), "must not be negative (0: a holder still fetching fails)")
	}
	if c.SilenceLimit < 0 {
		return config.Errf("audit.silence_limit", c.SilenceLimit.D(), "must not be negative (0: fail_rounds rounds)")
	}
	if c.UnverifiedCap < 0 {
		return config.Errf("audit.unverified_cap", c.UnverifiedCap, "must not be negative (0: no cap)")
	}
	if c.FailRounds < 0 {
		return config.Errf("audit.fail_rounds", c.FailRounds, "must not be negative (0: never suspend)")
	}
	if c.Deadline < config.Duration(100*time.Millisecond) {
		return config.Errf("audit.deadline", c.Deadline.D(), "must be at least 100ms")
	}
	return nil
}

// Sampler keeps a uniform sample of at most N of the items it is offered
// (reservoir sampling), in one pass over a pinset of any size.
type Sampler[T any] struct {
	N     int
	seen  int
	Items []T
}

// Offer considers one item.
func (s *Sampler[T]) Offer(x T) {
	s.seen++
	if len(s.Items) < s.N {
		s.Items = append(s.Items, x)
		return
	}
	if j := rand.IntN(s.seen); j < s.N {
		s.Items[j] = x
	}
}

// Record is what the audits of one peer found.
type Record struct {
	Passed, Failed int
	// Failing counts the failures since the last pass.
	Failing      int
	LastVerified time.Time // last pass
	LastFailed   time.Time
	LastError    string
}

// String is the record in a few words, for peers ls.
func (r Record) String() string {
	switch {
	case r.Failing > 0:
		return fmt.Sprintf("FAILING (%d in a row, last %s ago: %.120s)", r.Failing, time.Since(r.LastFailed).Round(time.Second), r.LastError)
	case r.Passed > 0:
		return fmt.Sprintf("verified %s ago (%d passed, %d failed)", time.Since(r.LastVerified).Round(time.Second), r.Passed, r.Failed)
	}
	return ""
}

// Verdicts are the audit records of every peer audited, at most Max
// (the peers audited longest ago go first).
type Verdicts struct {
	Max int

	mu sync.Mutex
	by map[peer.ID]*Record
}

// Add records one audit of pid at at: passed, or failed with err.
func (v *Verdicts) Add(pid peer.ID, at time.Time, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.by == nil {
		v.by = map[peer.ID]*Record{}
	}
	r := v.by[pid]
	if r == nil {
		if v.Max > 0 && len(v.by) >= v.Max {
			v.evict()
		}
		r = &Record{}
		v.by[pid] = r
	}
	if err == nil {
		r.Passed++
		r.Failing = 0
		r.LastVerified = at
		return
	}
	r.Failed++
	r.Failing++
	r.LastFailed, r.LastError = at, err.Error()
}

func (v *Verdicts) evict() {
	var oldest peer.ID
	var at time.Time
	for pid, r := range v.by {
		last := r.LastVerified
		if r.LastFailed.After(last) {
			last = r.LastFailed
		}
		if oldest == "" || last.Before(at) {
			oldest, at = pid, last
		}
	}
	delete(v.by, oldest)
}

// Failing are the peers whose last audit failed, sorted.
func (v *Verdicts) Failing() []peer.ID {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []peer.ID
	for pid, r := range v.by {
		if r.Failing > 0 {
			out = append(out, pid)
		}
	}
	slices.Sort(out)
	return out
}

// Get is pid's record.
func (v *Verdicts) Get(pid peer.ID) (Record, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	r, ok := v.by[pid]
	if !ok {
		return Record{}, false
	}
	return *r, true
}
