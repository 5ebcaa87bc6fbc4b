// Command conformance drives a running Pinring peer with IPFS Cluster's own
// Go REST client (github.com/ipfs-cluster/ipfs-cluster/api/rest/client),
// calling every endpoint Pinring serves and decoding each answer into IPFS
// Cluster's api types. It prints one line per check and exits 1 if any
// failed. The e2e test TestIPFSClusterClients runs it against three peers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ipfs-cluster/ipfs-cluster/api"
	"github.com/ipfs-cluster/ipfs-cluster/api/rest/client"
)

// checker prints each check with the time since the one before (a call
// that is slow shows where).
type checker struct {
	failed int
	last   time.Time
}

func (c *checker) check(name string, err error) bool {
	took := time.Since(c.last).Round(time.Millisecond)
	c.last = time.Now()
	if err != nil {
		c.failed++
		fmt.Printf("FAIL %s (%s): %v\n", name, took, err)
		return false
	}
	fmt.Printf("ok   %s (%s)\n", name, took)
	return true
}

func main() {
	addr := flag.String("api", "", "host:port of a Pinring peer's REST API")
	user := flag.String("user", "", "basic auth user")
	pass := flag.String("pass", "", "basic auth password")
	peers := flag.Int("peers", 3, "peers in the cluster")
	file := flag.String("file", "", "PATH=CID: add this file and expect this root")
	dir := flag.String("dir", "", "PATH=CID: add this directory wrapped and expect this root")
	leave := flag.String("leave", "", "host:port of another peer's API: at the end, ask it to leave the cluster (it stops)")
	flag.Parse()
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance: -api:", err)
		os.Exit(2)
	}
	cl, err := client.NewDefaultClient(&client.Config{Host: host, Port: port, Username: *user, Password: *pass, Timeout: time.Minute})
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(2)
	}
	c := &checker{last: time.Now()}
	run(context.Background(), c, cl, *peers, *file, *dir)
	if *leave != "" {
		peerRm(context.Background(), c, cl, *leave, *user, *pass)
	}
	if c.failed > 0 {
		fmt.Printf("%d checks failed\n", c.failed)
		os.Exit(1)
	}
}

// peerRm: a peer removes only itself; asked to remove another, it says why
// not.
func peerRm(ctx context.Context, c *checker, cl client.Client, addr, user, pass string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		c.check("PeerRm", err)
		return
	}
	other, err := client.NewDefaultClient(&client.Config{Host: host, Port: port, Username: user, Password: pass, Timeout: time.Minute})
	if err != nil {
		c.check("PeerRm", err)
		return
	}
	id, err := other.ID(ctx)
	if err != nil {
		c.check("PeerRm", err)
		return
	}
	err = cl.PeerRm(ctx, id.ID)
	var apiErr api.Error
	if errors.As(err, &apiErr) && apiErr.Code == 400 && apiErr.Message != "" {
		err = nil
	} else {
		err = fmt.Errorf("removing another peer answered %v, want a 400 that says why", err)
	}
	c.check("PeerRm of another peer is refused", err)
	c.check("PeerRm of itself", other.PeerRm(ctx, id.ID))
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := other.ID(ctx)
		if err != nil {
			c.check("the peer that left stopped", nil)
			return
		}
		if time.Now().After(deadline) {
			c.check("the peer that left stopped", errors.New("still answering after 30s"))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func collect[T any](f func(chan<- T) error) ([]T, error) {
	ch := make(chan T, 16)
	errc := make(chan error, 1)
	go func() { errc <- f(ch) }()
	var out []T
	for v := range ch {
		out = append(out, v)
	}
	return out, <-errc
}

func split(arg string) (string, api.Cid, error) {
	path, want, ok := strings.Cut(arg, "=")
	if !ok {
		return "", api.CidUndef, fmt.Errorf("%q: want PATH=CID", arg)
	}
	c, err := api.DecodeCid(want)
	return path, c, err
}

func run(ctx context.Context, c *checker, cl client.Client, n int, file, dir string) {
	v, err := cl.Version(ctx)
	if err == nil && v.Version == "" {
		err = errors.New("empty version")
	}
	c.check("Version", err)

	id, err := cl.ID(ctx)
	if err == nil && (id.ID == "" || id.Peername == "" || id.IPFS.ID == "" || len(id.ClusterPeers) != n || id.Error != "") {
		err = fmt.Errorf("incomplete: %+v", id)
	}
	c.check("ID", err)

	ids, err := collect(func(ch chan<- api.ID) error { return cl.Peers(ctx, ch) })
	if err == nil && len(ids) != n {
		err = fmt.Errorf("%d peers, want %d", len(ids), n)
	}
	for _, p := range ids {
		if err == nil && (p.ID == "" || p.ClusterPeersAddresses == nil) {
			err = fmt.Errorf("incomplete peer %+v", p)
		}
	}
	c.check("Peers", err)

	names, err := cl.MetricNames(ctx)
	if err == nil && !slices.Contains(names, "freespace") {
		err = fmt.Errorf("metric names %v lack freespace", names)
	}
	c.check("MetricNames", err)
	ms, err := cl.Metrics(ctx, "freespace")
	if err == nil && len(ms) != n {
		err = fmt.Errorf("%d freespace metrics, want %d", len(ms), n)
	}
	c.check("Metrics freespace", err)

	// Add: the root is the last object, and every object says where it
	// was allocated.
	add := func(name, arg string, p api.AddParams) api.Cid {
		path, want, err := split(arg)
		if err != nil {
			c.check(name, err)
			return api.CidUndef
		}
		outs, err := collect(func(ch chan<- api.AddedOutput) error { return cl.Add(ctx, []string{path}, p, ch) })
		if err == nil && len(outs) == 0 {
			err = errors.New("no output")
		}
		if err == nil && !outs[len(outs)-1].Cid.Equals(want) {
			err = fmt.Errorf("root %s, want %s (%+v)", outs[len(outs)-1].Cid, want, outs)
		}
		for _, o := range outs {
			if err == nil && (o.Size == 0 || len(o.Allocations) != max(p.ReplicationFactorMax, 0)) {
				err = fmt.Errorf("object without size or with %d allocations for %d replicas: %+v", len(o.Allocations), p.ReplicationFactorMax, o)
			}
		}
		c.check(name, err)
		return want
	}
	var fileCid, dirCid api.Cid
	if file != "" {
		p := api.DefaultAddParams()
		p.ReplicationFactorMin, p.ReplicationFactorMax = 2, 2
		fileCid = add("Add file at 2 replicas", file, p)
	}
	if dir != "" {
		p := api.DefaultAddParams()
		p.ReplicationFactorMin, p.ReplicationFactorMax = -1, -1
		p.Wrap = true
		dirCid = add("Add directory wrapped, everywhere", dir, p)
	}
	if !fileCid.Defined() || !dirCid.Defined() {
		return
	}

	// Pin with options, read back as IPFS Cluster's Pin.
	opts := api.PinOptions{ReplicationFactorMin: 2, ReplicationFactorMax: 2, Name: "conformance",
		Metadata: map[string]string{"k": "v"}, ExpireAt: time.Now().Add(time.Hour).Truncate(time.Second)}
	pin, err := cl.Pin(ctx, fileCid, opts)
	if err == nil && (!pin.Cid.Equals(fileCid) || pin.Name != "conformance" || pin.Metadata["k"] != "v" ||
		pin.ReplicationFactorMin != 2 || len(pin.Allocations) != 2 || pin.Reference != nil || pin.PinUpdate.Defined() ||
		!pin.ExpireAt.Equal(opts.ExpireAt)) {
		err = fmt.Errorf("answered %+v", pin)
	}
	c.check("Pin with options", err)

	alloc, err := cl.Allocation(ctx, fileCid)
	if err == nil && (alloc.Name != "conformance" || len(alloc.Allocations) != 2) {
		err = fmt.Errorf("answered %+v", alloc)
	}
	c.check("Allocation", err)
	pins, err := collect(func(ch chan<- api.Pin) error { return cl.Allocations(ctx, api.DataType, ch) })
	if err == nil && !slices.ContainsFunc(pins, func(p api.Pin) bool { return p.Cid.Equals(fileCid) }) {
		err = fmt.Errorf("%d pins, %s not among them", len(pins), fileCid)
	}
	c.check("Allocations", err)

	// Both replicas reach kubo.
	var st api.GlobalPinInfo
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err = cl.Status(ctx, fileCid, false)
		pinned := 0
		for _, pi := range st.PeerMap {
			if pi.Status == api.TrackerStatusPinned {
				pinned++
			}
		}
		if err != nil || pinned >= 2 || time.Now().After(deadline) {
			if err == nil && pinned < 2 {
				err = fmt.Errorf("%d pinned after 2 minutes: %+v", pinned, st)
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err == nil && (!st.Cid.Equals(fileCid) || st.Name != "conformance") {
		err = fmt.Errorf("answered %+v", st)
	}
	c.check("Status", err)
	local, err := cl.Status(ctx, fileCid, true)
	if err == nil && len(local.PeerMap) != 1 {
		err = fmt.Errorf("local status holds %d peers", len(local.PeerMap))
	}
	c.check("Status local", err)

	sts, err := collect(func(ch chan<- api.GlobalPinInfo) error {
		return cl.StatusCids(ctx, []api.Cid{fileCid, dirCid}, false, ch)
	})
	if err == nil && len(sts) != 2 {
		err = fmt.Errorf("%d statuses for 2 CIDs", len(sts))
	}
	c.check("StatusCids", err)
	sts, err = collect(func(ch chan<- api.GlobalPinInfo) error {
		return cl.StatusAll(ctx, api.TrackerStatusPinned, false, ch)
	})
	found := false
	for _, g := range sts {
		found = found || g.Cid.Equals(fileCid)
		for p, pi := range g.PeerMap {
			if err == nil && pi.Status != api.TrackerStatusPinned {
				err = fmt.Errorf("filter pinned listed %s as %s on %s", g.Cid, pi.Status, p)
			}
		}
	}
	if err == nil && !found {
		err = fmt.Errorf("%s not among %d pinned", fileCid, len(sts))
	}
	c.check("StatusAll filter pinned", err)

	rec, err := cl.Recover(ctx, fileCid, false)
	if err == nil && !rec.Cid.Equals(fileCid) {
		err = fmt.Errorf("answered %+v", rec)
	}
	c.check("Recover", err)
	_, err = collect(func(ch chan<- api.GlobalPinInfo) error { return cl.RecoverAll(ctx, true, ch) })
	c.check("RecoverAll local", err)

	// A path pin resolves through the wrapping directory.
	entry := dir
	if i := strings.LastIndexAny(entry[:strings.Index(entry, "=")], "/"); i >= 0 {
		entry = entry[i+1 : strings.Index(entry, "=")]
	}
	ppin, err := cl.PinPath(ctx, "/ipfs/"+dirCid.String()+"/"+entry, api.PinOptions{Name: "by path"})
	if err == nil && (!ppin.Cid.Defined() || ppin.Name != "by path") {
		err = fmt.Errorf("answered %+v", ppin)
	}
	c.check("PinPath", err)
	if err == nil {
		_, err = cl.UnpinPath(ctx, "/ipfs/"+dirCid.String()+"/"+entry)
		c.check("UnpinPath", err)
	}

	// Update: the new pin takes the old one's options.
	upd, err := cl.Pin(ctx, dirCid, api.PinOptions{PinUpdate: fileCid})
	if err == nil && (!upd.Cid.Equals(dirCid) || upd.Name != "conformance" || upd.ReplicationFactorMin != 2) {
		err = fmt.Errorf("answered %+v", upd)
	}
	c.check("Pin with pin-update", err)

	_, err = cl.Alerts(ctx)
	c.check("Alerts", err)
	_, err = cl.BandwidthByProtocol(ctx)
	c.check("BandwidthByProtocol", err)
	g, err := cl.GetConnectGraph(ctx)
	if err == nil && (g.ClusterID != id.ID || len(g.ClusterLinks) == 0) {
		err = fmt.Errorf("answered %+v", g)
	}
	c.check("GetConnectGraph", err)
	// kubo collects garbage only when no pin is in progress (its GC lock):
	// wait until no peer is pinning, as a user would before a GC.
	// (A pin makes no progress for long: ipfs.pin_timeout, 2 min, ends it.)
	settled := time.Now().Add(3 * time.Minute)
	for {
		busy, err := collect(func(ch chan<- api.GlobalPinInfo) error {
			return cl.StatusAll(ctx, api.TrackerStatusPinning|api.TrackerStatusPinQueued, false, ch)
		})
		if err == nil && len(busy) > 0 {
			err = fmt.Errorf("%d pins still in progress after 3 minutes, the first %s", len(busy), busy[0].Cid)
		}
		if err == nil || time.Now().After(settled) {
			c.check("no pin in progress before GC", err)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	gc, err := cl.RepoGC(ctx, true)
	if err == nil && len(gc.PeerMap) != 1 {
		err = fmt.Errorf("local GC answered for %d peers", len(gc.PeerMap))
	}
	c.check("RepoGC local", err)
	gc, err = cl.RepoGC(ctx, false)
	if err == nil && len(gc.PeerMap) != n {
		err = fmt.Errorf("GC answered for %d peers, want %d", len(gc.PeerMap), n)
	}
	c.check("RepoGC", err)
	c.check("Health", cl.Health(ctx))

	unp, err := cl.Unpin(ctx, fileCid)
	if err == nil && !unp.Cid.Equals(fileCid) {
		err = fmt.Errorf("answered %+v", unp)
	}
	c.check("Unpin", err)
	_, err = cl.Allocation(ctx, fileCid)
	var apiErr api.Error
	if errors.As(err, &apiErr) && apiErr.Code == 404 {
		err = nil
	} else if err == nil {
		err = errors.New("the unpinned CID is still allocated")
	}
	c.check("Allocation after Unpin is 404", err)
}
