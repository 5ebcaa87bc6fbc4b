package crdtstate

import (
	"time"

	"github.com/pinring/pinring/config"
)

// Config tunes the replicated pinset. Defaults come from DefaultConfig.
type Config struct {
	// BatchSize is the most pins packed into one CRDT delta, and the most
	// writes journaled with one fsync. Default 1000.
	BatchSize int `json:"batch_size"`
	// BatchAge is how long acknowledged writes are gathered before they
	// are packed into one delta and announced, unless BatchSize are
	// waiting first. Writes are durable (journaled) before this; it only
	// delays when other peers see them. 0: pack whatever is waiting at
	// once (small deltas under load). Default 100ms.
	BatchAge config.Duration `json:"batch_age"`
	// SyncWait bounds how long the journal holds back an fsync for the
	// writers it answered with the previous one: when fewer writes are
	// waiting than that fsync acknowledged, it waits until as many are
	// (the answered writers coming back with their next write) or SyncWait
	// has passed. A lone writer never waits; N steady concurrent writers
	// share one fsync instead of a few each. 0: fsync whatever is waiting
	// at once. Default 500µs.
	SyncWait config.Duration `json:"sync_wait"`
	// RebroadcastInterval is how often current heads are re-announced.
	// Default 5s.
	RebroadcastInterval config.Duration `json:"rebroadcast_interval"`
	// RepairInterval is how often an incompletely synced DAG is walked
	// again. Default 1m.
	RepairInterval config.Duration `json:"repair_interval"`
	// DAGWorkers is how many workers fetch and merge deltas. Default 5.
	DAGWorkers int `json:"dag_workers"`
	// SnapshotWait is how long a peer that starts with an empty pinset
	// and has peers to join waits for one of them (holding a write key)
	// to give it a snapshot of the state, before it syncs through the
	// DAG instead. 0: never ask for a snapshot. Default 20s.
	SnapshotWait config.Duration `json:"snapshot_wait"`
	// CompactRatio and CompactFloor say when a writer starts a new epoch
	// (docs/adr/0009-compaction.md): once the pinset's set entries
	// (elements and tombstones) outnumber CompactRatio × the live ones plus
	// CompactFloor. CompactRatio 0: never on its own ('cluster-peer state
	// compact' still does). Defaults 2 and 10000.
	CompactRatio int `json:"compact_ratio"`
	CompactFloor int `json:"compact_floor"`
	// CompactCheck is how often a writer counts the entries (a scan of
	// their keys). Default 5m.
	CompactCheck config.Duration `json:"compact_check"`
	// EpochWait bounds how long a peer that heard of a newer epoch waits
	// to have merged its copy before it gives up (and tries again when it
	// hears of it next). Default 10m.
	EpochWait config.Duration `json:"epoch_wait"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		BatchSize:           1000,
		BatchAge:            config.Duration(100 * time.Millisecond),
		SyncWait:            config.Duration(500 * time.Microsecond),
		RebroadcastInterval: config.Duration(5 * time.Second),
		RepairInterval:      config.Duration(time.Minute),
		DAGWorkers:          5,
		SnapshotWait:        config.Duration(20 * time.Second),
		CompactRatio:        2,
		CompactFloor:        10000,
		CompactCheck:        config.Duration(5 * time.Minute),
		EpochWait:           config.Duration(10 * time.Minute),
	}
}

// Validate checks every field without changing any.
func (c Config) Validate() error {
	switch {
	case c.BatchSize < 1:
		return config.Errf("state.batch_size", c.BatchSize, "must be at least 1")
	case c.BatchAge < 0:
		return config.Errf("state.batch_age", c.BatchAge.D(), "must not be negative")
	case c.SyncWait < 0:
		return config.Errf("state.sync_wait", c.SyncWait.D(), "must not be negative")
	case c.RebroadcastInterval <= 0:
		return config.Errf("state.rebroadcast_interval", c.RebroadcastInterval.D(), "must be positive")
	case c.RepairInterval < 0:
		return config.Errf("state.repair_interval", c.RepairInterval.D(), "must not be negative")
	case c.DAGWorkers < 1:
		return config.Errf("state.dag_workers", c.DAGWorkers, "must be at least 1")
	case c.SnapshotWait < 0:
		return config.Errf("state.snapshot_wait", c.SnapshotWait.D(), "must not be negative")
	case c.CompactRatio < 0:
		return config.Errf("state.compact_ratio", c.CompactRatio, "must not be negative (0: never on its own)")
	case c.CompactFloor < 0:
		return config.Errf("state.compact_floor", c.CompactFloor, "must not be negative")
	case c.CompactCheck <= 0:
		return config.Errf("state.compact_check", c.CompactCheck.D(), "must be positive")
	case c.EpochWait <= 0:
		return config.Errf("state.epoch_wait", c.EpochWait.D(), "must be positive")
	}
	return nil
}
