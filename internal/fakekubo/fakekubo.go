// Package fakekubo answers the kubo RPC calls a peer makes, in memory: for
// unit tests of the peer and for the benchmark, where a real kubo would
// measure kubo instead of Pinring. It remembers its pins (so the tracker's
// recover pass sees them) and reports a repository of StorageMax bytes that
// grows by PinBytes for each CID pinned (what the freespace and pinsize
// metrics measure). The e2e tests use real kubo daemons.
package fakekubo

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// Kubo is one fake kubo listening on loopback.
type Kubo struct {
	// Addr is its RPC API (host:port).
	Addr                 string
	storageMax, pinBytes uint64
	srv                  *http.Server
	mu                   sync.Mutex
	pinned               map[string]bool
	// Calls and Args count pin/add requests and the CIDs in them.
	Calls, Args atomic.Int64
}

// New starts a fake kubo whose repository holds storageMax bytes and grows
// by pinBytes for each CID pinned.
func New(storageMax, pinBytes uint64) (*Kubo, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	k := &Kubo{Addr: l.Addr().String(), storageMax: storageMax, pinBytes: pinBytes, pinned: map[string]bool{}}
	k.srv = &http.Server{Handler: http.HandlerFunc(k.serve)}
	go k.srv.Serve(l)
	return k, nil
}

// Close stops it.
func (k *Kubo) Close() error { return k.srv.Close() }

// Has reports whether c (as given to pin/add) is pinned.
func (k *Kubo) Has(c string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.pinned[c]
}

func (k *Kubo) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch r.URL.Path {
	case "/api/v0/id":
		fmt.Fprintln(w, `{"ID":"12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA","Addresses":[]}`)
	case "/api/v0/pin/add":
		k.Calls.Add(1)
		k.Args.Add(int64(len(q["arg"])))
		k.mu.Lock()
		for _, c := range q["arg"] {
			k.pinned[c] = true
		}
		k.mu.Unlock()
		fmt.Fprintf(w, `{"Pins":["%s"]}`+"\n", strings.Join(q["arg"], `","`))
	case "/api/v0/pin/rm":
		k.mu.Lock()
		delete(k.pinned, q.Get("arg"))
		k.mu.Unlock()
		fmt.Fprintf(w, `{"Pins":["%s"]}`+"\n", q.Get("arg"))
	case "/api/v0/pin/ls":
		k.mu.Lock()
		defer k.mu.Unlock()
		if arg := q.Get("arg"); arg != "" {
			if k.pinned[arg] {
				fmt.Fprintf(w, `{"Keys":{"%s":{"Type":"recursive"}}}`+"\n", arg)
			} else {
				w.WriteHeader(http.StatusInternalServerError)
				fmt.Fprintf(w, `{"Message":"path '%s' is not pinned","Code":0,"Type":"error"}`+"\n", arg)
			}
		} else if q.Get("type") == "recursive" {
			bw := bufio.NewWriter(w)
			for c := range k.pinned {
				fmt.Fprintf(bw, `{"Cid":"%s","Type":"recursive"}`+"\n", c)
			}
			bw.Flush()
		}
	case "/api/v0/repo/stat":
		k.mu.Lock()
		size := 1000 + uint64(len(k.pinned))*k.pinBytes
		k.mu.Unlock()
		fmt.Fprintf(w, `{"RepoSize":%d,"StorageMax":%d}`+"\n", size, k.storageMax)
	default:
		fmt.Fprintln(w, `{}`)
	}
}
