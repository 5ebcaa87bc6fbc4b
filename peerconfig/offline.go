package peerconfig

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

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
	var self peer.ID
	if sk, err := LoadIdentity(dir); err == nil {
		self, _ = peer.IDFromPrivateKey(sk)
	}
	return crdtstate.OpenOffline(ctx, cfg.State, cfg.DatastorePath(dir), cfg.Cluster.Name, writer, self, create)
}
