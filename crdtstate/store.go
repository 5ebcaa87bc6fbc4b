package crdtstate

import (
	"fmt"
	"os"

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
