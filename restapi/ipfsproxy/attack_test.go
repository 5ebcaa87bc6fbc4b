package ipfsproxy

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

// backend is a pinset that records unpins.
type backend struct {
	mu     sync.Mutex
	unpins []api.Cid
	api.ProxyBackend
}

func (b *backend) Unpin(_ context.Context, c api.Cid) (api.Pin, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.unpins = append(b.unpins, c)
	return api.Pin{Cid: c}, nil
}

// proxyWithAuth is a proxy in front of a kubo that records the calls it
// gets, with two credentials: "ro" (read-only) and "rw".
func proxyWithAuth(t *testing.T) (string, *backend, func() []string) {
	var mu sync.Mutex
	var got []string
	kubo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.Path)
		mu.Unlock()
		fmt.Fprintln(w, `{}`)
	}))
	t.Cleanup(kubo.Close)
	auth := func(r *http.Request, write bool) error {
		switch r.Header.Get("Authorization") {
		case "Bearer rw":
			return nil
		case "Bearer ro":
			if write {
				return fmt.Errorf("%w: a read-only token", api.ErrForbidden)
			}
			return nil
		}
		return api.ErrUnauthorized
	}
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	b := &backend{}
	s, err := New(cfg, strings.TrimPrefix(kubo.URL, "http://"), b, auth)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return "http://" + s.Addr(), b, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), got...) }
}

// A read-only token reaches kubo only to read: every call that changes
// kubo (its config, keys, names, MFS, repository, swarm, or stops it) is
// refused with 403 before kubo sees it. Before, everything but pin/* and
// add was forwarded as a read: a read-only token was kubo admin.
func TestReadOnlyTokenIsNotKuboAdmin(t *testing.T) {
	front, _, forwarded := proxyWithAuth(t)
	call := func(token, path string) int {
		req, _ := http.NewRequest("POST", front+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	admin := []string{"/api/v0/shutdown", "/api/v0/config?arg=Addresses.API&arg=/ip4/0.0.0.0/tcp/5001",
		"/api/v0/config/replace", "/api/v0/key/rm?arg=self", "/api/v0/key/gen?arg=k", "/api/v0/name/publish?arg=/ipfs/x",
		"/api/v0/repo/gc", "/api/v0/files/write?arg=/x", "/api/v0/files/rm?arg=/x", "/api/v0/dag/import",
		"/api/v0/block/put", "/api/v0/swarm/connect?arg=/ip4/1.2.3.4/tcp/1", "/api/v0/pin/remote/service/add",
		"/api/v0/cat/extra", "/debug/pprof/heap", "/webui"}
	for _, p := range admin {
		if code := call("ro", p); code != http.StatusForbidden {
			t.Errorf("read-only %s: %d, want 403", p, code)
		}
	}
	if got := forwarded(); len(got) != 0 {
		t.Fatalf("kubo got %v from a read-only token", got)
	}
	for _, p := range []string{"/api/v0/id", "/api/v0/cat?arg=x", "/api/v0/dag/get?arg=x", "/api/v0/version"} {
		if code := call("ro", p); code != http.StatusOK {
			t.Errorf("read-only %s: %d, want it forwarded", p, code)
		}
	}
	if code := call("rw", "/api/v0/shutdown"); code != http.StatusOK {
		t.Errorf("read-write shutdown: %d, want it forwarded (as IPFS Cluster's proxy does)", code)
	}
	if got := forwarded(); len(got) != 5 {
		t.Fatalf("kubo got %v, want the four reads and the read-write call", got)
	}
}

// pin/rm with its argument as a path segment (which kubo accepts) does not
// slip past the proxy to act on this kubo alone: it is refused, for every
// credential, and nothing is unpinned anywhere.
func TestPathArgumentsDoNotBypassTheProxy(t *testing.T) {
	front, b, forwarded := proxyWithAuth(t)
	c := testkit.Cid(1).String()
	for _, p := range []string{"/api/v0/pin/rm/" + c, "/api/v0/pin/add/" + c, "/api/v0/pin/update/" + c + "/" + c, "/api/v0/add/x"} {
		req, _ := http.NewRequest("POST", front+p, nil)
		req.Header.Set("Authorization", "Bearer rw")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", p, resp.StatusCode)
		}
	}
	if got := forwarded(); len(got) != 0 {
		t.Fatalf("kubo got %v", got)
	}
	if len(b.unpins) != 0 {
		t.Fatalf("unpinned %v", b.unpins)
	}
}
