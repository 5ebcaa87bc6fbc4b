package main

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinring/pinring/api"
)

// runChurn is the -churn mode (issue 27): n peers on stub kubos take pins
// live pins, then ops churn operations through the first peer's REST API
// that leave the live pinset the same size — an unpin and the same pin
// again, a pin whose options change (its name), a pin update to a new CID
// and the old one's unpin, in turn — printing after every tenth
// of the operations each peer's directory on disk against its size right
// after the first pins; then a new peer's catch-up (-catchup paths).
func runChurn(n, pins, ops, clients int, bin string, extra []string) error {
	ctx := context.Background()
	fmt.Printf("machine: calibration %s\n", calibrate())
	c, err := startCluster(n, bin, extra)
	defer c.close()
	if err != nil {
		return err
	}
	first := c.ps[0]
	time.Sleep(2 * time.Second) // connections and gossipsub meshes
	live := make([]api.Cid, pins)
	strs := make([]string, pins)
	for i := range live {
		live[i] = benchCid(i)
		strs[i] = live[i].String()
	}
	if err := ingest(first, live, strs, clients, api.PinOptions{}); err != nil {
		return err
	}
	if _, err := waitDigest(c.ps, uint64(pins), 30*time.Minute); err != nil {
		return err
	}
	base := c.sizes()
	fmt.Printf("churn: %d peers, %d live pins; on disk after them: %s\n", n, pins, sizesLine(base, nil))
	for i, p := range c.ps {
		fmt.Printf("churn: %s holds (MiB) %s\n", p.name, c.kinds(i))
	}

	next := pins // the next fresh CID for pin updates
	done := 0
	step := max(ops/10, 1)
	report := min(step, ops) // the next count at which sizes are printed
	began := time.Now()
	for done < ops {
		// At most one operation per live pin at once (one slot of live
		// each), so that concurrent clients never race on one CID.
		todo := min(report-done, pins)
		var work []func() error
		for j := 0; len(work) < todo; j++ {
			slot := (done + j) % pins
			switch j % 3 {
			case 0: // unpin, then the same pin again
				work = append(work, func() error {
					if _, err := first.cl.Unpin(ctx, live[slot]); err != nil {
						return err
					}
					_, err := first.cl.Pin(ctx, live[slot], api.PinOptions{})
					return err
				})
				if len(work) < todo {
					work = append(work, nil) // counted as the second operation
				}
			case 1: // new options for the same pin
				work = append(work, func() error {
					_, err := first.cl.Pin(ctx, live[slot], api.PinOptions{Name: fmt.Sprintf("churn %d", done+j)})
					return err
				})
			case 2: // replaced by a new CID: a pin update (which keeps the
				// old pin, as in IPFS Cluster), then the old one unpinned
				fresh := benchCid(next)
				next++
				work = append(work, func() error {
					old := live[slot]
					if _, err := first.cl.Pin(ctx, fresh, api.PinOptions{PinUpdate: old}); err != nil {
						return err
					}
					live[slot] = fresh
					_, err := first.cl.Unpin(ctx, old)
					return err
				})
				if len(work) < todo {
					work = append(work, nil)
				}
			}
		}
		if err := runAll(work, clients); err != nil {
			return err
		}
		done += todo
		if done < report {
			continue
		}
		report = min(report+step, ops)
		if _, err := waitDigest(c.ps, uint64(pins), 5*time.Minute); err != nil {
			return fmt.Errorf("after %d operations: %w; %s", done, err, differences(ctx, c, live))
		}
		fmt.Printf("churn: %d operations (%s): %s\n", done, time.Since(began).Round(time.Second), sizesLine(c.sizes(), base))
	}
	settled(c, base, 5*time.Minute)
	want, err := first.cl.Digest(ctx)
	if err != nil {
		return err
	}
	return catchUps(c, first, want, pins)
}

// differences says how each peer's pinset differs from live: the pins
// missing from it and those it holds beyond them.
func differences(ctx context.Context, c *cluster, live []api.Cid) string {
	want := map[string]int{}
	for i, l := range live {
		want[l.String()] = i
	}
	var out []string
	for _, p := range c.ps {
		have := map[string]bool{}
		var extra []string
		err := p.cl.Allocations(ctx, "", func(pin api.Pin) error {
			s := pin.Cid.String()
			have[s] = true
			if _, ok := want[s]; !ok {
				extra = append(extra, s)
			}
			return nil
		})
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %s", p.name, err))
			continue
		}
		var missing []string
		for s, slot := range want {
			if !have[s] {
				missing = append(missing, fmt.Sprintf("%s (slot %d)", s, slot))
			}
		}
		out = append(out, fmt.Sprintf("%s misses %v and holds beyond %v", p.name, missing, extra))
	}
	return strings.Join(out, "; ")
}

// settled waits, once the churn is over, until the ring holds still — every
// peer in the same epoch for 15 s, each having dropped an old one — and
// prints the sizes then: what a peer keeps once compaction has run (with
// state.compact_ratio 0 there is no epoch and it prints after limit).
func settled(c *cluster, base []int64, limit time.Duration) {
	began := time.Now()
	still := 0
	var last uint64
	for time.Since(began) < limit && still < 6 {
		time.Sleep(5 * time.Second)
		same, epoch := true, uint64(0)
		for i, p := range c.ps {
			h, err := p.cl.Health(context.Background())
			if err != nil || h.Store.LastDrop == nil {
				same = false
				break
			}
			if i == 0 {
				epoch = h.Store.Epoch
			} else if h.Store.Epoch != epoch {
				same = false
			}
		}
		switch {
		case !same:
			still = 0
		case epoch == last:
			still++
		default:
			last, still = epoch, 1
		}
	}
	if still < 6 {
		fmt.Printf("churn: the ring did not settle in an epoch within %s: %s\n", limit, sizesLine(c.sizes(), base))
		return
	}
	fmt.Printf("churn: settled in epoch %d %s after the churn: %s\n", last, time.Since(began).Round(time.Second), sizesLine(c.sizes(), base))
	for i, p := range c.ps {
		fmt.Printf("churn: %s holds (MiB) %s\n", p.name, c.kinds(i))
	}
}

// runAll runs the non-nil work items from clients goroutines and fails
// with the first error.
func runAll(work []func() error, clients int) error {
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(work) {
					return
				}
				if work[i] == nil {
					continue
				}
				if err := work[i](); err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	return nil
}

// sizes is each peer's directory on disk (blocks allocated, as du counts:
// Badger's files are sparse), in bytes.
func (c *cluster) sizes() []int64 {
	out := make([]int64, len(c.ps))
	for i, p := range c.ps {
		filepath.WalkDir(filepath.Join(c.dir, p.name), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if info, err := d.Info(); err == nil {
					out[i] += diskUsage(info)
				}
			}
			return nil
		})
	}
	return out
}

// kinds is what peer i's directory holds, by kind of file: Badger's
// tables (.sst) and value logs (.vlog) and the rest by the directory
// under the peer's that holds it, in MiB, largest first.
func (c *cluster) kinds(i int) string {
	top := filepath.Join(c.dir, c.ps[i].name)
	by := map[string]int64{}
	filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(top, filepath.Dir(path))
		kind := strings.SplitN(rel, string(filepath.Separator), 2)[0]
		if ext := filepath.Ext(path); ext == ".sst" || ext == ".vlog" {
			kind += " " + ext
		}
		by[kind] += diskUsage(info)
		return nil
	})
	var keys []string
	for k := range by {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool { return by[keys[a]] > by[keys[b]] })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.1f", k, float64(by[k])/(1<<20)))
	}
	return strings.Join(parts, ", ")
}

// sizesLine prints sizes in MiB, each with its ratio to base when given.
func sizesLine(sizes, base []int64) string {
	var parts []string
	for i, s := range sizes {
		part := fmt.Sprintf("peer%d %.1f MiB", i, float64(s)/(1<<20))
		if base != nil && base[i] > 0 {
			part += fmt.Sprintf(" (%.2f×)", float64(s)/float64(base[i]))
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, ", ")
}
