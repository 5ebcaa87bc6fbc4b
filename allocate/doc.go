// Package allocate will hold the allocator: pure functions that, given a
// pin's replication factors, its current allocations, the candidate peers
// with their metrics and the cluster's policies (most free space first,
// spread by tag, stability), return the peers that should hold the pin. It
// does no I/O and is tested with tables.
package allocate
