// Package pubsubmon will own the cluster's metric heartbeats: every peer
// publishes signed metrics (free space, pinned and queued counts, tags, a
// liveness ping) on the gossipsub topic /pinring/<cluster>/metrics; the
// monitor keeps the latest valid metric per peer and name, expires them
// after their TTL and raises an alert when a peer's metrics lapse. It does
// not decide allocations.
package pubsubmon
