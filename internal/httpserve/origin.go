package httpserve

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// SameOrigin refuses (with refuse and 403) what a web page on another site
// makes a browser send: a request whose Origin is not this server's own
// (scheme and host:port of the request), and, on a loopback listener, a
// request whose Host is not a loopback name or address (DNS rebinding: a
// page whose name points at 127.0.0.1 reads the answers). Clients that are
// not browsers send no Origin and are unaffected; the dashboard is served
// from the same origin. kubo refuses browser origins for the same reason.
func SameOrigin(loopback bool, refuse func(w http.ResponseWriter, code int, err error), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if loopback && !IsLoopback(r.Host) {
			refuse(w, http.StatusForbidden, fmt.Errorf("the request is addressed to %q, not this machine: a loopback API answers only requests to 127.0.0.1, [::1] or localhost", r.Host))
			return
		}
		if o := r.Header.Get("Origin"); o != "" {
			u, err := url.Parse(o)
			scheme := "http"
			if r.TLS != nil {
				scheme = "https"
			}
			if err != nil || u.Scheme != scheme || !strings.EqualFold(u.Host, r.Host) {
				refuse(w, http.StatusForbidden, fmt.Errorf("cross-origin request from %q refused: this API answers its own origin only", o))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// IsLoopback reports whether hostport names this machine: a loopback
// address or localhost.
func IsLoopback(hostport string) bool {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") || strings.HasSuffix(strings.ToLower(h), ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
