// Package trust owns who may write: ed25519 write keys, the set of write
// public keys a cluster accepts, tickets (read keys: the cluster name, its
// write public keys, bootstrap addresses and an optional private-network
// secret in one copy-pasteable string), the signed envelopes in which head
// announcements travel, and the endorsements by which a peer proves it holds
// a write key.
//
// Everything here is pure except reading and writing key files. The checks
// are table-tested; the peer and the libp2p side call them through small
// interfaces of their own.
package trust
