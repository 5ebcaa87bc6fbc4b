package pinsvc

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

func serve(t *testing.T) (*httptest.Server, *testkit.Backend) {
	t.Helper()
	f := testkit.NewBackend()
	s := &Server{cfg: DefaultConfig(), backend: f}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv, f
}

func call(t *testing.T, srv *httptest.Server, method, path, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusAccepted || method != http.MethodDelete {
		if ct != "application/json" {
			t.Fatalf("%s %s: Content-Type %q", method, path, ct)
		}
	}
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func TestAddGetReplaceRemove(t *testing.T) {
	srv, f := serve(t)
	var ps PinStatus
	if code := call(t, srv, "POST", "/pins", `{"cid":"`+testkit.Cid(1).String()+`","name":"one","meta":{"app":"x"},"origins":["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"]}`, &ps); code != 202 {
		t.Fatalf("POST /pins: %d", code)
	}
	if ps.Status != Pinned || ps.Pin.Name != "one" || ps.Pin.Meta["app"] != "x" || len(ps.Pin.Meta) != 1 ||
		len(ps.Delegates) != 1 || strings.HasPrefix(ps.RequestID, testkit.Cid(1).String()+"-cluster") || !strings.HasPrefix(ps.RequestID, testkit.Cid(1).String()+"-") {
		t.Fatalf("created: %+v", ps)
	}
	var again PinStatus
	call(t, srv, "POST", "/pins", `{"cid":"`+testkit.Cid(1).String()+`"}`, &again)
	if again.RequestID == ps.RequestID {
		t.Fatal("pinning the same CID again gave the same request ID")
	}
	if code := call(t, srv, "GET", "/pins/"+ps.RequestID, "", nil); code != 404 {
		t.Fatalf("the replaced request: %d, want 404", code)
	}
	var got PinStatus
	if code := call(t, srv, "GET", "/pins/"+again.RequestID, "", &got); code != 200 || got.RequestID != again.RequestID {
		t.Fatalf("GET: %d %+v", code, got)
	}
	var repl PinStatus
	if code := call(t, srv, "POST", "/pins/"+again.RequestID, `{"cid":"`+testkit.Cid(2).String()+`"}`, &repl); code != 202 || repl.Pin.Cid != testkit.Cid(2).String() {
		t.Fatalf("replace: %d %+v", code, repl)
	}
	if _, err := f.PinGet(context.Background(), mustCid(t, testkit.Cid(1).String())); err == nil {
		t.Fatal("the replaced CID is still pinned")
	}
	if code := call(t, srv, "DELETE", "/pins/"+repl.RequestID, "", nil); code != 202 {
		t.Fatalf("DELETE: %d", code)
	}
	if f.Len() != 0 {
		t.Fatalf("%d pins left", f.Len())
	}
}

func mustCid(t *testing.T, s string) api.Cid {
	c, err := api.ParseCid(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The client pages with before=<created of the oldest result> and stops
// when count == len(results): count must honour before/after.
func TestListNewestFirstAndPaging(t *testing.T) {
	srv, _ := serve(t)
	const n = 25
	for i := range n {
		name := fmt.Sprintf("p%02d", i)
		if i%5 == 4 {
			name = "queued-" + name
		}
		call(t, srv, "POST", "/pins", `{"cid":"`+testkit.Cid(i).String()+`","name":"`+name+`"}`, nil)
	}
	pinned := n - n/5
	var seen []string
	before := ""
	for page := 0; ; page++ {
		var res PinResults
		q := "/pins"
		if before != "" {
			q += "?before=" + url.QueryEscape(before)
		}
		if code := call(t, srv, "GET", q, "", &res); code != 200 {
			t.Fatalf("list: %d", code)
		}
		if res.Count != pinned-len(seen) {
			t.Fatalf("page %d: count %d, want %d", page, res.Count, pinned-len(seen))
		}
		for i := 1; i < len(res.Results); i++ {
			if !res.Results[i].Created.Before(res.Results[i-1].Created) {
				t.Fatal("results are not newest first")
			}
		}
		for _, r := range res.Results {
			if r.Status != Pinned {
				t.Fatalf("default filter let %s through", r.Status)
			}
			seen = append(seen, r.Pin.Cid)
		}
		if res.Count == len(res.Results) {
			break
		}
		before = res.Results[len(res.Results)-1].Created.Format(time.RFC3339Nano)
	}
	slices.Sort(seen)
	if len(slices.Compact(seen)) != pinned {
		t.Fatalf("paged through %d distinct pins, want %d", len(seen), pinned)
	}
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"?status=queued", n / 5},
		{"?status=queued,pinned&limit=1000", n},
		{"?name=p03", 1},
		{"?name=P0&match=ipartial&limit=100", 8}, // p00–p09 but the two queued
		{"?name=P0&match=partial", 0},
		{"?cid=" + testkit.Cid(0).String() + "," + testkit.Cid(1).String(), 2},
		{"?meta=" + url.QueryEscape(`{"app":"none"}`), 0},
	} {
		var res PinResults
		if code := call(t, srv, "GET", "/pins"+tc.query, "", &res); code != 200 || res.Count != tc.want {
			t.Errorf("GET /pins%s: %d count %d, want %d", tc.query, code, res.Count, tc.want)
		}
	}
}

func TestBadRequestsGetSpecErrors(t *testing.T) {
	srv, f := serve(t)
	for _, tc := range []struct {
		method, path, body string
		code               int
		reason             string
	}{
		{"POST", "/pins", `{"cid":"nope"}`, 400, "BAD_REQUEST"},
		{"POST", "/pins", `not json`, 400, "BAD_REQUEST"},
		{"POST", "/pins", `{"cid":"` + testkit.Cid(1).String() + `","meta":{"pinsvc:requestid":"x"}}`, 400, "BAD_REQUEST"},
		{"POST", "/pins", `{"cid":"` + testkit.Cid(1).String() + `","origins":["bad"]}`, 400, "BAD_REQUEST"},
		{"POST", "/pins", `{"cid":"` + testkit.Cid(1).String() + `","name":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "PAYLOAD_TOO_LARGE"},
		{"GET", "/pins?limit=0", "", 400, "BAD_REQUEST"},
		{"GET", "/pins?status=gone", "", 400, "BAD_REQUEST"},
		{"GET", "/pins?before=yesterday", "", 400, "BAD_REQUEST"},
		{"GET", "/pins?meta=%7Bx", "", 400, "BAD_REQUEST"},
		{"GET", "/pins/garbage", "", 404, "NOT_FOUND"},
		{"GET", "/pins/" + testkit.Cid(9).String() + "-abc", "", 404, "NOT_FOUND"},
		{"DELETE", "/pins/" + testkit.Cid(9).String() + "-abc", "", 404, "NOT_FOUND"},
	} {
		var fl failure
		if code := call(t, srv, tc.method, tc.path, tc.body, &fl); code != tc.code || fl.Error.Reason != tc.reason {
			t.Errorf("%s %s: %d %+v, want %d %s", tc.method, tc.path, code, fl, tc.code, tc.reason)
		}
	}
	if f.Len() != 0 {
		t.Fatalf("bad requests left %d pins", f.Len())
	}
	// No token at all: 401.
	resp, err := http.Get(srv.URL + "/pins")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("no token: %d, want 401", resp.StatusCode)
	}
}

func TestStatusOf(t *testing.T) {
	g := func(sts ...api.TrackerStatus) api.GlobalPinInfo {
		m := map[string]api.PinInfoShort{}
		for i, s := range sts {
			m[fmt.Sprint(i)] = api.PinInfoShort{Status: s}
		}
		return api.GlobalPinInfo{PeerMap: m}
	}
	for _, tc := range []struct {
		in   api.GlobalPinInfo
		want string
	}{
		{g(), Queued},
		{g(api.StatusPinQueued, api.StatusRemote), Queued},
		{g(api.StatusPinning, api.StatusPinError), Pinning},
		{g(api.StatusPinError, api.StatusRemote), Failed},
		{g(api.StatusPinError, api.StatusPinned), Pinned},
		{g(api.StatusClusterError), Queued},
	} {
		if got := StatusOf(tc.in); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.in.PeerMap, got, tc.want)
		}
	}
}

func TestStartingPeerAnswers503(t *testing.T) {
	f := testkit.NewBackend()
	msg := "the peer is starting: opening the pinset; try again in a moment"
	var mu sync.Mutex
	s := &Server{cfg: DefaultConfig(), backend: f}
	s.WhileStarting(func() string { mu.Lock(); defer mu.Unlock(); return msg })
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	body := fmt.Sprintf(`{"cid":%q,"name":"early"}`, testkit.Cid(1).String())
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/pins", ""},
		{"POST", "/pins", body},
		{"GET", "/pins/x", ""},
		{"POST", "/pins/x", body},
		{"DELETE", "/pins/x", ""},
	} {
		var fl failure
		if code := call(t, srv, c.method, c.path, c.body, &fl); code != http.StatusServiceUnavailable ||
			fl.Error.Reason != "SERVICE_UNAVAILABLE" || fl.Error.Details != msg {
			t.Fatalf("%s %s while starting: %d %+v", c.method, c.path, code, fl)
		}
	}
	if f.Len() != 0 {
		t.Fatalf("%d requests reached the backend while the peer started", f.Len())
	}
	// Credentials are still checked first.
	req, _ := http.NewRequest("GET", srv.URL+"/pins", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token while starting: %d", resp.StatusCode)
	}
	mu.Lock()
	msg = ""
	mu.Unlock()
	var st PinStatus
	if code := call(t, srv, "POST", "/pins", body, &st); code != http.StatusAccepted || st.Pin.Cid != testkit.Cid(1).String() {
		t.Fatalf("POST /pins once ready: %d %+v", code, st)
	}
}

// A web page on another site cannot pin through the Pinning Service API
// with the operator's browser (a POST with a body the API takes as JSON is
// a "simple" request that needs no preflight): 403 in the spec's error
// shape, nothing pinned. Before, the pin was made.
func TestCrossSiteRequestsAreRefused(t *testing.T) {
	srv, f := serve(t)
	req, _ := http.NewRequest("POST", srv.URL+"/pins", strings.NewReader(`{"cid":"`+testkit.Cid(1).String()+`"}`))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Authorization", "Bearer t")
	req.Header.Set("Origin", "http://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var fl failure
	json.NewDecoder(resp.Body).Decode(&fl)
	resp.Body.Close()
	if resp.StatusCode != 403 || fl.Error.Reason != "FORBIDDEN" || f.Len() != 0 {
		t.Fatalf("a cross-site pin: %d %+v, %d pins; want 403 FORBIDDEN and none", resp.StatusCode, fl, f.Len())
	}
}
