// Package trust will own keys and roles: ed25519 write keys, peer keys,
// read keys (tickets carrying the cluster name, write public keys,
// bootstrap addresses and an optional private-network secret), and the
// signing and verification of head announcements and metrics. It does no
// I/O beyond reading key files.
package trust
