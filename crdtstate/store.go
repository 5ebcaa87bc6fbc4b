package crdtstate

import (
	"fmt"
	"os"

	"github.com/dgraph-io/badger/v2/options"
	badger "github.com/ipfs/go-ds-badger2"
)

// OpenBadger opens (creating if needed) the peer's Badger datastore in dir.
// Writes are not fsynced one by one: the state syncs once per committed
// batch, which is what makes an acknowledged write durable.
func OpenBadger(dir string) (*badger.Datastore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	opts := badger.DefaultOptions
	opts.SyncWrites = false
	// Memory: the defaults keep up to five 16 MiB memtables and map every
	// table into the process (counted in its RSS). A peer holding a
	// million pins must stay within 300 MB, so: fewer, smaller memtables,
	// tables read through the page cache, and a bounded block cache.
	opts.NumMemtables = 2
	opts.MaxTableSize = 16 << 20
	opts.TableLoadingMode = options.FileIO
	opts.BlockCacheSize = 32 << 20
	// CIDs are random keys: every table flushed to level 0 overlaps all of
	// level 1, so each level-0 compaction rewrites level 1 whole. Letting
	// 20 tables gather (instead of Badger's 5) cuts those rewrites: at a
	// million pins the other peers spent 34–35 µs a pin merging with 20
	// against 40–46 with 10, and 61–63 with 5 and 8 MiB memtables; 30
	// gained nothing more (docs/performance.md). A lookup checks every
	// level-0 table's Bloom filter, which is cheap; most lookups of absent
	// keys never reach Badger (keyfilter.go).
	opts.NumLevelZeroTables = 20
	opts.NumLevelZeroTablesStall = 40
	// Conflict detection keeps the keys of every transaction committed
	// while an older read is open (a listing, a digest, a recover pass):
	// over 100 MB while a million-pin peer ingests. Nothing here reads
	// and writes in one transaction, so nothing needs it.
	opts.DetectConflicts = false
	// Value log files of 4 MiB (Badger's default is 1 GiB): only a file
	// no longer written to can be collected, so with 1 GiB files what an
	// old epoch left (docs/adr/0009-compaction.md) would stay on disk
	// until a gigabyte more had been written; with 16 MiB, a settled
	// 10,000-pin store (7.4 MiB of values) still held up to a file more
	// than its data (docs/performance.md).
	opts.ValueLogFileSize = 4 << 20
	opts.Logger = quietLogger{}
	store, err := badger.NewDatastore(dir, &opts)
	if err != nil {
		return nil, fmt.Errorf("opening datastore %s: %w", dir, err)
	}
	return store, nil
}

type quietLogger struct{}

func (quietLogger) Errorf(f string, a ...any)   { logger.Errorf(f, a...) }
func (quietLogger) Warningf(f string, a ...any) { logger.Warnf(f, a...) }
func (quietLogger) Infof(f string, a ...any)    { logger.Debugf(f, a...) }
func (quietLogger) Debugf(f string, a ...any)   { logger.Debugf(f, a...) }
