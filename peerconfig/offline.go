package peerconfig

import (
	"context"

	"github.com/pinring/pinring/crdtstate"
	"github.com/pinring/pinring/trust"
)

// OpenOffline opens the pinset of the stopped peer in dir (creating an
// empty one with create), for export, import and digest; imports are
// written by the peer's write key, if it holds one.
func OpenOffline(ctx context.Context, cfg Config, dir string, create bool) (*crdtstate.Offline, error) {
	writer := ""
	if k, err := trust.LoadWriteKey(cfg.WriteKeyPath(dir)); err == nil {
		writer = k.Public().String()
	}
	return crdtstate.OpenOffline(ctx, cfg.State, cfg.DatastorePath(dir), cfg.Cluster.Name, writer, create)
}
