package httpserve

import (
	"context"
	"errors"
	"net/http"

	"github.com/pinring/pinring/api"
)

// StatusOf is the HTTP status for an error from the peer, the one mapping
// every front end (REST API, Pinning Service API) uses: the api domain
// errors, a request cut short (503), anything else 500.
func StatusOf(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, api.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, api.ErrBadRequest), errors.Is(err, api.ErrBadPin), errors.Is(err, api.ErrBadCid):
		return http.StatusBadRequest
	case errors.Is(err, api.ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, api.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, api.ErrTooMany):
		return http.StatusTooManyRequests
	case errors.Is(err, api.ErrNoSpace):
		return http.StatusInsufficientStorage
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Authenticate lets a request through to next only if auth accepts it;
// write says whether the request changes anything (what a read-only
// credential may not do). A refused request gets refuse with the status
// (401 or 403) and the reason, written in the API's own error format. A
// nil auth lets everything through.
func Authenticate(auth api.Authorizer, write func(*http.Request) bool, refuse func(w http.ResponseWriter, code int, err error), next http.Handler) http.Handler {
	if auth == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := auth(r, write(r)); err != nil {
			code := StatusOf(err)
			if code != http.StatusForbidden {
				code = http.StatusUnauthorized
			}
			refuse(w, code, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}
