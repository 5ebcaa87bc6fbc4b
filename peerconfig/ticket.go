package peerconfig

import (
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/pinring/pinring/trust"
)

// TicketFor builds the read key of the cluster cfg belongs to, with addrs
// (each a /p2p multiaddr) as bootstrap addresses.
func TicketFor(cfg Config, addrs []ma.Multiaddr) (trust.Ticket, error) {
	ks, err := trust.NewKeySet(cfg.Trust.WriteKeys)
	if err != nil {
		return trust.Ticket{}, err
	}
	if ks.Len() == 0 {
		return trust.Ticket{}, fmt.Errorf("trust.write_keys is empty: a ticket without write keys could verify nothing")
	}
	secret, err := cfg.SecretBytes()
	if err != nil {
		return trust.Ticket{}, err
	}
	return trust.Ticket{Cluster: cfg.Cluster.Name, WriteKeys: ks.Keys(), Bootstrap: addrs, Secret: secret}, nil
}

// ApplyTicket makes cfg a member of the ticket's cluster: its name, write
// keys, bootstrap addresses and network secret.
func (c *Config) ApplyTicket(t trust.Ticket) {
	c.Cluster.Name = t.Cluster
	c.Trust.WriteKeys = c.Trust.WriteKeys[:0]
	for _, k := range t.WriteKeys {
		c.Trust.WriteKeys = append(c.Trust.WriteKeys, k.String())
	}
	for _, a := range t.Bootstrap {
		if !slices.Contains(c.Cluster.Bootstrap, a.String()) {
			c.Cluster.Bootstrap = append(c.Cluster.Bootstrap, a.String())
		}
	}
	c.Cluster.Secret = ""
	if len(t.Secret) > 0 {
		c.Cluster.Secret = hex.EncodeToString(t.Secret)
	}
}

// ConfiguredP2PAddrs are the /p2p addresses other peers could dial, as far
// as the configuration tells without the peer running: p2p.listen with
// unspecified IPs (0.0.0.0, ::) expanded to this machine's non-loopback
// interface addresses (loopback when there is nothing else). Addresses
// with port 0 are left out: the port is only known once the peer runs.
func ConfiguredP2PAddrs(cfg Config, id peer.ID) ([]ma.Multiaddr, error) {
	suffix, err := ma.NewMultiaddr("/p2p/" + id.String())
	if err != nil {
		return nil, err
	}
	var listen []ma.Multiaddr
	for _, s := range cfg.P2P.Listen {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, err
		}
		if port, err := a.ValueForProtocol(ma.P_TCP); err == nil && port == "0" {
			continue
		}
		if port, err := a.ValueForProtocol(ma.P_UDP); err == nil && port == "0" {
			continue
		}
		listen = append(listen, a)
	}
	ifaces, err := manet.InterfaceMultiaddrs()
	if err != nil {
		return nil, err
	}
	expanded, err := manet.ResolveUnspecifiedAddresses(listen, ifaces)
	if err != nil {
		return nil, err
	}
	var public, loop []ma.Multiaddr
	for _, a := range expanded {
		switch {
		case manet.IsIPLoopback(a):
			loop = append(loop, a.Encapsulate(suffix))
		case manet.IsIP6LinkLocal(a):
		default:
			public = append(public, a.Encapsulate(suffix))
		}
	}
	if len(public) == 0 {
		return loop, nil
	}
	return public, nil
}
