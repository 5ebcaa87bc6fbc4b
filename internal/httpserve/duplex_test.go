package httpserve

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"
)

// A reverse proxy in front of a server that answers before it has read the
// upload (as kubo's add does) passes the whole answer through when wrapped
// in FullDuplex: without it, Go's server cut the upload at the answer's
// first byte and the proxy's client got an answer with no body (seen in
// the e2e test of the IPFS proxy).
func TestFullDuplexThroughAReverseProxy(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(http.StatusOK)
		fmt.Fprintln(w, "started")
		w.(http.Flusher).Flush()
		n, err := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "read %d %v\n", n, err)
	}))
	t.Cleanup(backend.Close)
	u, _ := url.Parse(backend.URL)
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u) }, FlushInterval: -1}
	// The client sends the rest of its upload only once the answer has
	// begun, as a client streaming a large add in step with its progress
	// would; without FullDuplex the front server holds the answer back
	// until the upload ends, and neither side moves.
	upload := func(front *httptest.Server) (string, error) {
		pr, pw := io.Pipe()
		begun := make(chan struct{})
		go func() {
			pw.Write([]byte("first part;"))
			select {
			case <-begun:
				pw.Write(bytes.Repeat([]byte("x"), 1000))
				pw.Close()
			case <-time.After(10 * time.Second):
				pw.CloseWithError(errors.New("the answer never began"))
			}
		}()
		resp, err := front.Client().Post(front.URL, "application/octet-stream", pr)
		close(begun)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	want := fmt.Sprintf("started\nread %d <nil>\n", len("first part;")+1000)
	front := httptest.NewServer(FullDuplex(rp))
	t.Cleanup(front.Close)
	for i := range 3 { // on one kept-alive connection
		if got, err := upload(front); got != want || err != nil {
			t.Fatalf("upload %d through the proxy: %q, %v; want %q", i, got, err, want)
		}
	}
}
