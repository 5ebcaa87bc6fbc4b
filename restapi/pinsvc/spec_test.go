package pinsvc

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pinring/pinring/internal/testkit"
)

// The response schemas of the IPFS Pinning Service API v1.0.0
// (ipfs/pinning-services-api-spec, ipfs-pinning-service.yaml, components),
// written out here as Go values: the spec is not served by the package
// registries that CI reaches, so its constraints are transcribed, each with
// the schema name it comes from.
type schema struct {
	name      string
	typ       string // object, array, string, integer
	required  []string
	props     map[string]*schema
	additonal *schema // for objects: the schema of every other property
	items     *schema
	enum      []string
	minItems  int
	maxItems  int // 0: no bound
	unique    bool
	maxLength int
	minimum   *int
	int32     bool
	dateTime  bool
	maxProps  int
}

var (
	zero      = 0
	strSchema = &schema{name: "string", typ: "string"}
	// Status: queued, pinning, pinned, failed.
	specStatus = &schema{name: "Status", typ: "string", enum: []string{"queued", "pinning", "pinned", "failed"}}
	// Origins and Delegates: unique multiaddr strings, 0–20 and 1–20.
	specOrigins   = &schema{name: "Origins", typ: "array", items: strSchema, unique: true, minItems: 0, maxItems: 20}
	specDelegates = &schema{name: "Delegates", typ: "array", items: strSchema, unique: true, minItems: 1, maxItems: 20}
	// PinMeta and StatusInfo: string values, at most 1000.
	specPinMeta    = &schema{name: "PinMeta", typ: "object", additonal: strSchema, maxProps: 1000}
	specStatusInfo = &schema{name: "StatusInfo", typ: "object", additonal: strSchema, maxProps: 1000}
	specPin        = &schema{name: "Pin", typ: "object", required: []string{"cid"}, props: map[string]*schema{
		"cid":     strSchema,
		"name":    {name: "Pin.name", typ: "string", maxLength: 255},
		"origins": specOrigins,
		"meta":    specPinMeta,
	}}
	specPinStatus = &schema{name: "PinStatus", typ: "object", required: []string{"requestid", "status", "created", "pin", "delegates"},
		props: map[string]*schema{
			"requestid": strSchema,
			"status":    specStatus,
			"created":   {name: "PinStatus.created", typ: "string", dateTime: true},
			"pin":       specPin,
			"delegates": specDelegates,
			"info":      specStatusInfo,
		}}
	specPinResults = &schema{name: "PinResults", typ: "object", required: []string{"count", "results"}, props: map[string]*schema{
		"count":   {name: "PinResults.count", typ: "integer", int32: true, minimum: &zero},
		"results": {name: "PinResults.results", typ: "array", items: specPinStatus, unique: true, maxItems: 1000},
	}}
	specFailure = &schema{name: "Failure", typ: "object", required: []string{"error"}, props: map[string]*schema{
		"error": {name: "Failure.error", typ: "object", required: []string{"reason"}, props: map[string]*schema{
			"reason": strSchema, "details": strSchema,
		}},
	}}
)

// validate reports every way v (decoded JSON) breaks s.
func (s *schema) validate(v any, at string) []string {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, at+": "+fmt.Sprintf(f, a...)+" ("+s.name+")") }
	switch s.typ {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			bad("want an object, got %T", v)
			return errs
		}
		for _, r := range s.required {
			if _, ok := m[r]; !ok {
				bad("required %q missing", r)
			}
		}
		if s.maxProps > 0 && len(m) > s.maxProps {
			bad("%d properties, at most %d", len(m), s.maxProps)
		}
		for k, pv := range m {
			if ps := s.props[k]; ps != nil {
				errs = append(errs, ps.validate(pv, at+"."+k)...)
			} else if s.additonal != nil {
				errs = append(errs, s.additonal.validate(pv, at+"."+k)...)
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			bad("want an array, got %T", v)
			return errs
		}
		if len(a) < s.minItems || (s.maxItems > 0 && len(a) > s.maxItems) {
			bad("%d items, want %d to %d", len(a), s.minItems, s.maxItems)
		}
		seen := map[string]bool{}
		for i, it := range a {
			if s.unique {
				b, _ := json.Marshal(it)
				if seen[string(b)] {
					bad("item %d repeats an earlier one", i)
				}
				seen[string(b)] = true
			}
			errs = append(errs, s.items.validate(it, fmt.Sprintf("%s[%d]", at, i))...)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			bad("want a string, got %T", v)
			return errs
		}
		if s.maxLength > 0 && len([]rune(str)) > s.maxLength {
			bad("%d characters, at most %d", len([]rune(str)), s.maxLength)
		}
		if len(s.enum) > 0 && !slices.Contains(s.enum, str) {
			bad("%q is not one of %v", str, s.enum)
		}
		if s.dateTime {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				bad("%q is not an RFC 3339 date-time", str)
			}
		}
	case "integer":
		f, ok := v.(float64)
		if !ok || f != float64(int64(f)) {
			bad("want an integer, got %v", v)
			return errs
		}
		if s.minimum != nil && f < float64(*s.minimum) {
			bad("%v is below %d", f, *s.minimum)
		}
		if s.int32 && (f > 1<<31-1 || f < -1<<31) {
			bad("%v does not fit int32", f)
		}
	}
	return errs
}

// specResponses are the responses the spec declares for each operation:
// status code → body schema (nil: no body). Every operation also declares
// 400, 401, 404, 409, 4XX and 5XX with a Failure body.
var specResponses = map[string]map[int]*schema{
	"GET /pins":                {200: specPinResults},
	"POST /pins":               {202: specPinStatus},
	"GET /pins/{requestid}":    {200: specPinStatus},
	"POST /pins/{requestid}":   {202: specPinStatus},
	"DELETE /pins/{requestid}": {202: nil},
}

// checkAgainstSpec fails the test when a response's status is not one the
// spec declares for the operation or its body does not match the schema.
func checkAgainstSpec(t *testing.T, op string, resp *http.Response, body []byte) {
	t.Helper()
	declared, ok := specResponses[op]
	if !ok {
		t.Fatalf("%s: not an operation of the spec", op)
	}
	s, ok := declared[resp.StatusCode]
	if !ok {
		if resp.StatusCode < 400 || resp.StatusCode > 599 {
			t.Errorf("%s: status %d is not declared by the spec", op, resp.StatusCode)
			return
		}
		s = specFailure // 400, 401, 404, 409, 4XX, 5XX
	}
	if s == nil {
		if len(strings.TrimSpace(string(body))) != 0 {
			t.Errorf("%s: %d declares no body, got %q", op, resp.StatusCode, body)
		}
		return
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: %d with Content-Type %q, the spec says application/json", op, resp.StatusCode, ct)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("%s: %d body is not JSON: %v\n%s", op, resp.StatusCode, err, body)
		return
	}
	for _, e := range s.validate(v, "body") {
		t.Errorf("%s: %d: %s\n%s", op, resp.StatusCode, e, body)
	}
}

// The validator itself rejects what breaks the schema.
func TestSpecSchemaCatchesViolations(t *testing.T) {
	good := `{"requestid":"r","status":"pinned","created":"2020-07-27T17:32:28Z","pin":{"cid":"Qm"},"delegates":["/ip4/1.2.3.4/tcp/1/p2p/x"]}`
	var v any
	json.Unmarshal([]byte(good), &v)
	if errs := specPinStatus.validate(v, "body"); len(errs) != 0 {
		t.Fatalf("a good PinStatus: %v", errs)
	}
	for name, bad := range map[string]string{
		"no delegates":     `{"requestid":"r","status":"pinned","created":"2020-07-27T17:32:28Z","pin":{"cid":"Qm"},"delegates":[]}`,
		"unknown status":   `{"requestid":"r","status":"done","created":"2020-07-27T17:32:28Z","pin":{"cid":"Qm"},"delegates":["a"]}`,
		"bad created":      `{"requestid":"r","status":"pinned","created":"yesterday","pin":{"cid":"Qm"},"delegates":["a"]}`,
		"no cid":           `{"requestid":"r","status":"pinned","created":"2020-07-27T17:32:28Z","pin":{},"delegates":["a"]}`,
		"long name":        `{"requestid":"r","status":"pinned","created":"2020-07-27T17:32:28Z","pin":{"cid":"Qm","name":"` + strings.Repeat("x", 256) + `"},"delegates":["a"]}`,
		"meta not strings": `{"requestid":"r","status":"pinned","created":"2020-07-27T17:32:28Z","pin":{"cid":"Qm","meta":{"a":1}},"delegates":["a"]}`,
		"twice a delegate": `{"requestid":"r","status":"pinned","created":"2020-07-27T17:32:28Z","pin":{"cid":"Qm"},"delegates":["a","a"]}`,
		"null origins":     `{"requestid":"r","status":"pinned","created":"2020-07-27T17:32:28Z","pin":{"cid":"Qm","origins":null},"delegates":["a"]}`,
	} {
		json.Unmarshal([]byte(bad), &v)
		if errs := specPinStatus.validate(v, "body"); len(errs) == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Every endpoint and error path of the Pinning Service API answers as the
// spec's schema says.
func TestEveryResponseMatchesTheSpec(t *testing.T) {
	srv, f := serve(t)
	send := func(op, method, path, body, token string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		checkAgainstSpec(t, op, resp, b)
		return resp, b
	}
	// Successes, with every optional field.
	resp, b := send("POST /pins", "POST", "/pins", `{"cid":"`+testkit.Cid(1).String()+`","name":"n","origins":["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"],"meta":{"app":"a"}}`, "t")
	if resp.StatusCode != 202 {
		t.Fatalf("POST /pins: %d %s", resp.StatusCode, b)
	}
	var ps PinStatus
	json.Unmarshal(b, &ps)
	send("POST /pins", "POST", "/pins", `{"cid":"`+testkit.Cid(2).String()+`"}`, "t")
	for _, q := range []string{"", "?limit=1", "?status=queued,pinning,pinned,failed", "?cid=" + testkit.Cid(1).String() + "," + testkit.Cid(2).String(),
		"?name=n&match=ipartial", "?meta=" + url.QueryEscape(`{"app":"a"}`), "?before=2999-01-01T00:00:00Z&after=2000-01-01T00:00:00Z"} {
		if resp, b := send("GET /pins", "GET", "/pins"+q, "", "t"); resp.StatusCode != 200 {
			t.Errorf("GET /pins%s: %d %s", q, resp.StatusCode, b)
		}
	}
	send("GET /pins/{requestid}", "GET", "/pins/"+ps.RequestID, "", "t")
	resp, b = send("POST /pins/{requestid}", "POST", "/pins/"+ps.RequestID, `{"cid":"`+testkit.Cid(3).String()+`","name":"replaced"}`, "t")
	if resp.StatusCode != 202 || json.Unmarshal(b, &ps) != nil || ps.Pin.Name != "replaced" {
		t.Fatalf("replace: %d %s", resp.StatusCode, b)
	}
	if resp, _ := send("DELETE /pins/{requestid}", "DELETE", "/pins/"+ps.RequestID, "", "t"); resp.StatusCode != 202 {
		t.Errorf("DELETE: %d", resp.StatusCode)
	}
	// Every error path.
	for _, tc := range []struct{ op, method, path, body, token string }{
		{"GET /pins", "GET", "/pins", "", ""}, // no token
		{"GET /pins", "GET", "/pins?limit=0", "", "t"},
		{"GET /pins", "GET", "/pins?limit=1001", "", "t"},
		{"GET /pins", "GET", "/pins?status=gone", "", "t"},
		{"GET /pins", "GET", "/pins?before=yesterday", "", "t"},
		{"GET /pins", "GET", "/pins?meta=%7Bx", "", "t"},
		{"GET /pins", "GET", "/pins?match=fuzzy&name=x", "", "t"},
		{"GET /pins", "GET", "/pins?cid=" + strings.Repeat(testkit.Cid(1).String()+",", 11), "", "t"},
		{"GET /pins", "GET", "/pins?cid=nope", "", "t"},
		{"POST /pins", "POST", "/pins", `{"cid":"nope"}`, "t"},
		{"POST /pins", "POST", "/pins", `not json`, "t"},
		{"POST /pins", "POST", "/pins", `{}`, "t"},
		{"POST /pins", "POST", "/pins", `{"cid":"` + testkit.Cid(4).String() + `","name":"` + strings.Repeat("x", 256) + `"}`, "t"},
		{"POST /pins", "POST", "/pins", `{"cid":"` + testkit.Cid(4).String() + `","origins":["bad"]}`, "t"},
		{"POST /pins", "POST", "/pins", `{"cid":"` + testkit.Cid(4).String() + `","name":"` + strings.Repeat("x", 2<<20) + `"}`, "t"},
		{"POST /pins", "POST", "/pins", `{"cid":"` + testkit.Cid(4).String() + `"}`, ""},
		{"GET /pins/{requestid}", "GET", "/pins/garbage", "", "t"},
		{"GET /pins/{requestid}", "GET", "/pins/" + ps.RequestID, "", "t"}, // deleted
		{"POST /pins/{requestid}", "POST", "/pins/garbage", `{"cid":"` + testkit.Cid(4).String() + `"}`, "t"},
		{"POST /pins/{requestid}", "POST", "/pins/" + ps.RequestID, `{"cid":"nope"}`, "t"},
		{"DELETE /pins/{requestid}", "DELETE", "/pins/" + ps.RequestID, "", "t"},
		{"DELETE /pins/{requestid}", "DELETE", "/pins/garbage", "", ""},
	} {
		if resp, b := send(tc.op, tc.method, tc.path, tc.body, tc.token); resp.StatusCode < 400 {
			t.Errorf("%s %s: %d %s, want an error", tc.method, tc.path, resp.StatusCode, b)
		}
	}
	if f.Len() != 1 {
		t.Errorf("%d pins left, want the one of %s", f.Len(), testkit.Cid(2).String())
	}
}
