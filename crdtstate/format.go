package crdtstate

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
)

// DiskFormat is the version of the on-disk layout this code writes:
//
//	1: the pinset and its journal, no version key (before 2026-11-24)
//	2: as 1, plus the version key <namespace>/format
//
// A store written by an older version is migrated step by step when
// opened; one written by a newer version is refused.
const DiskFormat = 2

// ErrNewerFormat is returned for a store written by a newer Pinring.
var ErrNewerFormat = errors.New("the pinset was written by a newer Pinring")

// migrations[v] turns a store of format v into format v+1.
var migrations = map[int]func(ctx context.Context, store ds.Datastore, ns string) error{
	// 1 → 2: nothing moves; the version is recorded from now on.
	1: func(context.Context, ds.Datastore, string) error { return nil },
}

func formatKey(ns string) ds.Key { return ds.NewKey(ns).ChildString("format") }

// diskFormat reads the store's format: 0 for an empty store, 1 for data
// without a version key.
func diskFormat(ctx context.Context, store ds.Datastore, ns string) (int, error) {
	v, err := store.Get(ctx, formatKey(ns))
	if errors.Is(err, ds.ErrNotFound) {
		res, err := store.Query(ctx, query.Query{Prefix: ns, KeysOnly: true, Limit: 1})
		if err != nil {
			return 0, err
		}
		defer res.Close()
		if _, ok := res.NextSync(); ok {
			return 1, nil
		}
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("the pinset's format key holds %q, not a version", v)
	}
	return n, nil
}

// checkFormat migrates an older store and refuses a newer one; an empty
// store gets the current version.
func checkFormat(ctx context.Context, store ds.Datastore, ns string) error {
	v, err := diskFormat(ctx, store, ns)
	if err != nil {
		return err
	}
	switch {
	case v > DiskFormat:
		return fmt.Errorf("%w (format %d; this program knows up to %d): upgrade Pinring, or with the newer one run 'cluster-peer state export' and here 'state cleanup' and 'state import'", ErrNewerFormat, v, DiskFormat)
	case v == DiskFormat:
		return nil
	case v > 0:
		for ; v < DiskFormat; v++ {
			if err := migrations[v](ctx, store, ns); err != nil {
				return fmt.Errorf("migrating the pinset from format %d to %d: %w", v, v+1, err)
			}
			if err := store.Put(ctx, formatKey(ns), []byte(strconv.Itoa(v+1))); err != nil {
				return err
			}
			logger.Infof("pinset migrated from format %d to %d", v, v+1)
		}
	default:
		if err := store.Put(ctx, formatKey(ns), []byte(strconv.Itoa(DiskFormat))); err != nil {
			return err
		}
	}
	return store.Sync(ctx, formatKey(ns))
}
