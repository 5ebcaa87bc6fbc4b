package restapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
)

const cidA = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"

func newTestServer(t *testing.T) (*httptest.Server, *testkit.Backend) {
	fb := testkit.NewBackend()
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.MaxBodyBytes = 1024
	s, err := New(cfg, fb)
	if err != nil {
		t.Fatal(err)
	}
	s.Release()
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv, fb
}

func do(t *testing.T, method, url string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestErrorsAreJSONAndNameTheProblem(t *testing.T) {
	srv, _ := newTestServer(t)
	cases := []struct {
		method, path string
		body         io.Reader
		code         int
		mention      string
	}{
		{"POST", "/pins/not-a-cid", nil, 400, "not-a-cid"},
		{"POST", "/pins/" + cidA + "?replication-min=x", nil, 400, "replication-min"},
		{"POST", "/pins/" + cidA + "?mode=sideways", nil, 400, "sideways"},
		{"POST", "/pins/" + cidA + "?expire-at=tomorrow", nil, 400, "expire-at"},
		{"POST", "/pins/" + cidA + "?user-allocations=nope", nil, 400, "nope"},
		{"POST", "/pins/" + cidA + "?origins=nope", nil, 400, "nope"},
		{"GET", "/allocations/" + cidA, nil, 404, cidA},
		{"GET", "/allocations/zzz", nil, 400, "zzz"},
		{"GET", "/allocations?filter=weird", nil, 400, "weird"},
		{"GET", "/pins?filter=sleepy", nil, 400, "sleepy"},
		{"GET", "/pins?local=maybe", nil, 400, "local"},
		{"DELETE", "/pins/" + cidA, nil, 404, cidA},
		{"POST", "/pins/" + cidA, strings.NewReader(strings.Repeat("x", 5000)), 413, "limit"},
		{"GET", "/nothing-here", nil, 404, "/nothing-here"},
	}
	for _, c := range cases {
		resp, b := do(t, c.method, srv.URL+c.path, c.body)
		var e api.Error
		if resp.StatusCode != c.code || json.Unmarshal(b, &e) != nil || e.Code != c.code || !strings.Contains(e.Message, c.mention) {
			t.Errorf("%s %s: %d %s; want %d mentioning %q", c.method, c.path, resp.StatusCode, b, c.code, c.mention)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: content type %q", c.method, c.path, ct)
		}
	}
}

func TestPinOptionsReachTheBackend(t *testing.T) {
	srv, fb := newTestServer(t)
	q := url.Values{"name": {"n"}, "mode": {"direct"}, "replication-min": {"2"}, "replication-max": {"3"},
		"meta-foo": {"bar"}, "expire-at": {"2030-01-01T00:00:00Z"},
		"origins": {"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"}}
	resp, b := do(t, "POST", srv.URL+"/pins/"+cidA+"?"+q.Encode(), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	p := fb.LastPin()
	if p.Name != "n" || p.Mode != api.PinModeDirect || p.MaxDepth != 0 || p.ReplicationFactorMin != 2 ||
		p.ReplicationFactorMax != 3 || p.Metadata["foo"] != "bar" || p.ExpireAt.Year() != 2030 || len(p.Origins) != 1 {
		t.Fatalf("backend got %+v", p)
	}
	var got api.Pin
	if err := json.Unmarshal(b, &got); err != nil || got.Cid.String() != cidA {
		t.Fatalf("response %s: %v", b, err)
	}
	// The answer is encoding/json's encoding of the pin, byte for byte.
	if want, _ := json.Marshal(p); string(b) != string(want)+"\n" {
		t.Errorf("response\n%s\nwant\n%s", b, want)
	}
	// The JSON field names are IPFS Cluster's.
	for _, field := range []string{`"replication_factor_min":2`, `"mode":"direct"`, `"type":"pin"`, `"cid":"` + cidA + `"`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("response lacks %s: %s", field, b)
		}
	}
	// Path pinning resolves through the backend.
	if resp, b := do(t, "POST", srv.URL+"/pins/ipfs/"+cidA+"/sub", nil); resp.StatusCode != 200 {
		t.Fatalf("path pin: %d %s", resp.StatusCode, b)
	}
}

func TestExpireIn(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	o, err := api.ParsePinOptions(url.Values{"expire-in": {"1h"}}, now)
	if err != nil || !o.ExpireAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("%v %v", o.ExpireAt, err)
	}
	back, err := api.ParsePinOptions(api.PinOptionsQuery(api.PinOptions{Name: "x", ReplicationFactorMin: 1, ReplicationFactorMax: 2,
		Metadata: map[string]string{"a": "b"}}), now)
	if err != nil || back.Name != "x" || back.ReplicationFactorMax != 2 || back.Metadata["a"] != "b" {
		t.Fatalf("query round trip: %+v %v", back, err)
	}
}

func TestStreamingAndTrailer(t *testing.T) {
	srv, fb := newTestServer(t)
	for i := range 3 {
		c, _ := api.ParseCid(cidA)
		p := api.Pin{Cid: c, Type: api.DataType, PinOptions: api.PinOptions{Name: fmt.Sprint(i)}}
		if i > 0 { // distinct CIDs
			p.Cid = api.NewCid(c.Cid)
			p.Cid, _ = api.ParseCid([]string{"", "bafkreie5cvv4h45feyrq5mf2mkpdh5p5fsm4j2rjixsfvtdgenvfyumkuy", "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"}[i])
		}
		fb.Put(p)
	}
	fb.FailStreams(errors.New("disk on fire"))
	resp, err := http.Get(srv.URL + "/allocations")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	n := 0
	for sc.Scan() {
		var p api.Pin
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		// Each line is encoding/json's encoding of the pin.
		stored, _ := fb.Get(p.Cid)
		if want, _ := json.Marshal(stored); string(want) != sc.Text() {
			t.Errorf("streamed\n%s\nwant\n%s", sc.Bytes(), want)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("streamed %d pins", n)
	}
	if got := resp.Trailer.Get("X-Stream-Error"); got != "disk on fire" {
		t.Fatalf("trailer = %q", got)
	}
}

func TestMetricsAndAlertsEndpoints(t *testing.T) {
	srv, _ := newTestServer(t)
	resp, body := do(t, http.MethodGet, srv.URL+"/monitor/metrics/freespace", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"value":"100"`) || !strings.Contains(string(body), `"valid":true`) {
		t.Fatalf("GET /monitor/metrics/freespace: %d %s", resp.StatusCode, body)
	}
	for _, path := range []string{"/monitor/metrics/nope", "/monitor/metrics", "/health/alerts"} {
		resp, body = do(t, http.MethodGet, srv.URL+path, nil)
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "[]" {
			t.Fatalf("GET %s: %d %s, want 200 []", path, resp.StatusCode, body)
		}
	}
}

// GET /health answers as IPFS Cluster's does (its Go client reads any
// body as an error): 204 and nothing when healthy, 503 with the report when
// not. GET /health/report always gives the report.
func TestHealthEndpoints(t *testing.T) {
	srv, f := newTestServer(t)
	resp, body := do(t, http.MethodGet, srv.URL+"/health", nil)
	if resp.StatusCode != http.StatusNoContent || len(body) != 0 {
		t.Fatalf("GET /health: %d %q, want 204 and no body", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodGet, srv.URL+"/health/report", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"healthy":true`) || !strings.Contains(string(body), `"connected_peers":2`) {
		t.Fatalf("GET /health/report: %d %s", resp.StatusCode, body)
	}
	f.SetUnhealthy(true)
	for _, path := range []string{"/health", "/health/report"} {
		resp, body = do(t, http.MethodGet, srv.URL+path, nil)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"healthy":false`) {
			t.Fatalf("GET %s unhealthy: %d %s", path, resp.StatusCode, body)
		}
	}
}

func TestRepoGCAndBandwidthEndpoints(t *testing.T) {
	srv, _ := newTestServer(t)
	resp, body := do(t, http.MethodPost, srv.URL+"/ipfs/gc?local=maybe", nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"code":400`) || !strings.Contains(string(body), "local") {
		t.Fatalf("POST /ipfs/gc?local=maybe: %d %s", resp.StatusCode, body)
	}
	for q, peers := range map[string]int{"": 2, "?local=true": 1} {
		resp, body = do(t, http.MethodPost, srv.URL+"/ipfs/gc"+q, nil)
		var g struct {
			PeerMap map[string]json.RawMessage `json:"peer_map"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &g) != nil || len(g.PeerMap) != peers {
			t.Fatalf("POST /ipfs/gc%s: %d %s, want %d peers", q, resp.StatusCode, body, peers)
		}
	}
	resp, body = do(t, http.MethodGet, srv.URL+"/health/bandwidth", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"/meshsub/1.1.0":{"total_in":10,"total_out":20,"rate_in":1.5,"rate_out":0}`) {
		t.Fatalf("GET /health/bandwidth: %d %s", resp.StatusCode, body)
	}
}

func TestAddParamsRefuseWhatIsNotSupported(t *testing.T) {
	now := time.Now()
	for q, want := range map[string]string{
		"format=tar":   "format",
		"nocopy=true":  "nocopy",
		"shard=true":   "shard",
		"shard=maybe":  "shard",
		"hidden=maybe": "hidden",
	} {
		v, _ := url.ParseQuery(q)
		if _, err := api.ParseAddParams(v, now); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %s", q, err, want)
		}
	}
	v, _ := url.ParseQuery("format=unixfs&shard=false&local=true&hidden=1")
	ap, err := api.ParseAddParams(v, now)
	if err != nil || !ap.Local || !ap.Hidden || ap.Format != "" {
		t.Fatalf("supported values: %+v, %v", ap, err)
	}
	v, _ = url.ParseQuery("format=car")
	if ap, err = api.ParseAddParams(v, now); err != nil || ap.Format != "car" {
		t.Fatalf("format=car: %+v, %v", ap, err)
	}
}

// While the peer starts, every route but /version and the dashboard answers
// 503 with what the peer is doing, and nothing reaches the backend; once
// it is ready, the same requests work.
func TestAStartingPeerAnswers503(t *testing.T) {
	fb := testkit.NewBackend()
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	var mu sync.Mutex
	msg := "the peer is starting: loading a snapshot"
	s, err := New(cfg, fb, Extras{Starting: func() string { mu.Lock(); defer mu.Unlock(); return msg }})
	if err != nil {
		t.Fatal(err)
	}
	s.Release()
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)

	for _, r := range []struct{ method, path string }{{"GET", "/id"}, {"POST", "/pins/" + cidA}, {"GET", "/pins"}, {"GET", "/state/digest"}, {"GET", "/nothing-here"}} {
		resp, b := do(t, r.method, srv.URL+r.path, nil)
		var e api.Error
		if resp.StatusCode != 503 || json.Unmarshal(b, &e) != nil || e.Code != 503 || e.Message != msg || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s while starting: %d %s %v", r.method, r.path, resp.StatusCode, b, resp.Header)
		}
	}
	if fb.Len() != 0 {
		t.Fatalf("%d pins reached the backend while the peer was starting", fb.Len())
	}
	if resp, b := do(t, "GET", srv.URL+"/version", nil); resp.StatusCode != 200 {
		t.Errorf("/version while starting: %d %s", resp.StatusCode, b)
	}
	if resp, b := do(t, "GET", srv.URL+"/ui/", nil); resp.StatusCode != 200 {
		t.Errorf("/ui/ while starting: %d %.100s", resp.StatusCode, b)
	}

	mu.Lock()
	msg = ""
	mu.Unlock()
	if resp, b := do(t, "POST", srv.URL+"/pins/"+cidA, nil); resp.StatusCode != 200 || fb.Len() != 1 {
		t.Fatalf("pin once ready: %d %s", resp.StatusCode, b)
	}
	if resp, b := do(t, "GET", srv.URL+"/id", nil); resp.StatusCode != 200 {
		t.Fatalf("/id once ready: %d %s", resp.StatusCode, b)
	}
}

// slowEOF ends a body a little after the rest of it was sent.
type slowEOF struct{}

func (slowEOF) Read([]byte) (int, error) { time.Sleep(20 * time.Millisecond); return 0, io.EOF }

// A streaming add leaves what follows the multipart body's closing boundary
// (the end of a chunked body) unread; the connection must still serve the
// next request. Go's server, in full duplex, panicked on it (golang/go
// #68560) and the client's next POST on the connection got EOF.
func TestStreamingAddKeepsTheConnectionUsable(t *testing.T) {
	srv, _ := newTestServer(t)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	t.Cleanup(client.CloseIdleConnections)
	var dialled int
	client.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialled++
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	for i := range 20 {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		fw, _ := mw.CreateFormFile("file", fmt.Sprintf("f%d", i))
		fw.Write([]byte("hello"))
		mw.Close()
		// Sent chunked, as IPFS Cluster's client streams it, with the
		// chunked body's end arriving after the closing boundary.
		resp, err := client.Post(srv.URL+"/add", mw.FormDataContentType(), io.MultiReader(&body, slowEOF{}))
		if err != nil {
			t.Fatalf("add %d on a kept-alive connection: %v", i, err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(out), fmt.Sprintf(`"name":"f%d"`, i)) {
			t.Fatalf("add %d: %d %s", i, resp.StatusCode, out)
		}
	}
	t.Logf("20 adds over %d connection(s)", dialled)
}

// A web page in the operator's browser cannot use the loopback API: a
// cross-origin request is refused before it reaches the peer, and so is a
// request addressed to another name (DNS rebinding); the API's own origin
// (the dashboard) and clients that send no Origin are served.
func TestCrossSiteRequestsAreRefused(t *testing.T) {
	srv, _ := newTestServer(t)
	c := testkit.Cid(1).String()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []struct {
		what, origin, host string
		want               int
	}{
		{"a page on another site", "http://evil.example", "", 403},
		{"a page on another port of this machine", "http://127.0.0.1:1", "", 403},
		{"DNS rebinding", "", "evil.example:" + strings.Split(host, ":")[1], 403},
		{"the dashboard", srv.URL, "", 200},
		{"a client without Origin", "", "", 200},
	} {
		req, _ := http.NewRequest("POST", srv.URL+"/pins/"+c, nil)
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		if tc.host != "" {
			req.Host = tc.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Fatalf("%s: %d %s, want %d", tc.what, resp.StatusCode, body, tc.want)
		}
		if tc.want == 403 {
			if resp, _ := do(t, "GET", srv.URL+"/allocations/"+c, nil); resp.StatusCode != 404 {
				t.Fatalf("%s: the pin reached the peer (GET /allocations: %d)", tc.what, resp.StatusCode)
			}
		}
	}
}
