package membership

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pinring/pinring/api"
)

// Bounds of one announcement on the peers topic (docs/security.md).
const (
	// MaxAnnouncement is the most bytes an announcement may have: room
	// for a peer connected to a few thousand others.
	MaxAnnouncement = 256 << 10
	// MaxAddrs bounds each list of addresses (the peer's, its kubo's); an
	// announcer sends its first MaxAddrs.
	MaxAddrs = 32
	// maxLinks bounds each list of peer IDs (ConnectedTo and the like).
	maxLinks = 4096
	// maxName bounds a peer name.
	maxName = 255
	// minGap is the least time between two announcements of one peer
	// that are both passed on; more are ignored.
	minGap = 100 * time.Millisecond
)

// Check decodes an announcement gossipsub says from sent, and refuses it,
// saying why, unless it names its sender, fits the bounds above, and
// points only at its sender: every /p2p address the sender's own ID, every
// kubo address its kubo's. (Dialling whatever a stranger lists would make
// every peer attack a target of its choosing.) Peer names are printed on
// terminals: a name with control characters is refused.
func Check(data []byte, from peer.ID) (api.ID, error) {
	var id api.ID
	if len(data) > MaxAnnouncement {
		return id, fmt.Errorf("%d bytes, at most %d", len(data), MaxAnnouncement)
	}
	if err := json.Unmarshal(data, &id); err != nil {
		return id, err
	}
	if id.ID != from {
		return id, fmt.Errorf("names %s, sent by %s", id.ID, from)
	}
	if len(id.Peername) > maxName || strings.ContainsFunc(id.Peername, unicode.IsControl) {
		return id, fmt.Errorf("peer name of %d bytes or with control characters", len(id.Peername))
	}
	for what, n := range map[string]int{"addresses": len(id.Addresses), "kubo addresses": len(id.IPFS.Addresses),
		"cluster peer addresses": len(id.ClusterPeersAddresses)} {
		if n > MaxAddrs {
			return id, fmt.Errorf("%d %s, at most %d", n, what, MaxAddrs)
		}
	}
	for what, n := range map[string]int{"cluster peers": len(id.ClusterPeers), "connected peers": len(id.ConnectedTo),
		"connected kubos": len(id.IPFSConnectedTo)} {
		if n > maxLinks {
			return id, fmt.Errorf("%d %s, at most %d", n, what, maxLinks)
		}
	}
	if err := only(id.Addresses, from, true); err != nil {
		return id, fmt.Errorf("addresses: %w", err)
	}
	if err := only(id.IPFS.Addresses, id.IPFS.ID, false); err != nil {
		return id, fmt.Errorf("kubo addresses: %w", err)
	}
	return id, nil
}

// only checks that every address in addrs names owner in its /p2p part
// (must: it has one).
func only(addrs []ma.Multiaddr, owner peer.ID, must bool) error {
	for _, a := range addrs {
		if a == nil {
			return fmt.Errorf("an empty address")
		}
		v, err := a.ValueForProtocol(ma.P_P2P)
		if err != nil {
			if must {
				return fmt.Errorf("%s has no /p2p part", a)
			}
			continue
		}
		if v != owner.String() {
			return fmt.Errorf("%s names another peer than %s", a, owner)
		}
	}
	return nil
}

// Fit trims a peer's own announcement to what Check takes: a host with
// many interfaces and transports can have more than MaxAddrs addresses,
// and a peer of a large ring more than maxLinks connections; the first
// ones are sent.
func Fit(id *api.ID) {
	id.Addresses = id.Addresses[:min(len(id.Addresses), MaxAddrs)]
	id.IPFS.Addresses = id.IPFS.Addresses[:min(len(id.IPFS.Addresses), MaxAddrs)]
	id.ClusterPeersAddresses = id.ClusterPeersAddresses[:min(len(id.ClusterPeersAddresses), MaxAddrs)]
	id.ClusterPeers = id.ClusterPeers[:min(len(id.ClusterPeers), maxLinks)]
	// Two lists of half maxLinks peer IDs (~55 bytes each in JSON) stay
	// under MaxAnnouncement together.
	id.ConnectedTo = id.ConnectedTo[:min(len(id.ConnectedTo), maxLinks/2)]
	id.IPFSConnectedTo = id.IPFSConnectedTo[:min(len(id.IPFSConnectedTo), maxLinks/2)]
	if len(id.Peername) > maxName {
		id.Peername = id.Peername[:maxName]
	}
}

// Validator is the peers topic's gossipsub validator: Check, and at most
// one announcement a peer per minGap. Its memory of senders is bounded
// (it forgets those not heard for a minute once it holds too many).
type Validator struct {
	mu   sync.Mutex
	last map[peer.ID]time.Time
	Now  func() time.Time // nil: time.Now
}

// maxSenders is how many senders the validator remembers before it
// forgets those not heard from for a minute.
const maxSenders = 8192

// Validate implements pubsub.ValidatorEx.
func (v *Validator) Validate(_ context.Context, _ peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	from := msg.GetFrom()
	id, err := Check(msg.Data, from)
	if err != nil {
		logger.Debugf("refusing a peer announcement from %s: %s", from, err)
		return pubsub.ValidationReject
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.last == nil {
		v.last = map[peer.ID]time.Time{}
	}
	if now.Sub(v.last[from]) < minGap {
		return pubsub.ValidationIgnore
	}
	if _, known := v.last[from]; !known && len(v.last) >= maxSenders {
		for p, at := range v.last {
			if now.Sub(at) > time.Minute {
				delete(v.last, p)
			}
		}
		if len(v.last) >= maxSenders {
			return pubsub.ValidationIgnore // a flood of new keys: they wait
		}
	}
	v.last[from] = now
	msg.ValidatorData = id // decoded once: Announcements.Run reads it
	return pubsub.ValidationAccept
}

// CheckRelayed checks an announcement a writer passed on (the peers
// protocol) as Check checks one gossipsub says its named peer sent: it must
// name itself in its addresses, and fit the bounds.
func CheckRelayed(data []byte) (api.ID, error) {
	var who struct {
		ID peer.ID `json:"id"`
	}
	if len(data) > MaxAnnouncement {
		return api.ID{}, fmt.Errorf("%d bytes, at most %d", len(data), MaxAnnouncement)
	}
	if err := json.Unmarshal(data, &who); err != nil {
		return api.ID{}, err
	}
	if who.ID == "" {
		return api.ID{}, fmt.Errorf("names no peer")
	}
	return Check(data, who.ID)
}
