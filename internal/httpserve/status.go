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
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
