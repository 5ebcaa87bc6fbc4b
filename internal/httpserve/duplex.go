package httpserve

import (
	"io"
	"net/http"
)

// FullDuplex lets h write its answer while the request body still comes in
// (an add's progress; kubo's answer streamed back by a reverse proxy). By
// default Go's HTTP/1 server discards the rest of the body when the answer
// starts, and a handler still reading or forwarding it fails midway.
//
// What h leaves unread (up to 256 KiB; beyond that the connection closes)
// is read before the wrapper returns: left to the server, the body's end
// would start a read of the connection racing the next request's, and the
// server panics and drops the connection (golang/go#68560).
func FullDuplex(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).EnableFullDuplex(); err == nil {
			defer func() {
				io.CopyN(io.Discard, r.Body, 256<<10)
				r.Body.Close()
			}()
		}
		h.ServeHTTP(w, r)
	})
}
