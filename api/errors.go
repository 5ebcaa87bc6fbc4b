package api

import "errors"

// Domain errors: every component returns these (wrapped, with the details)
// for what the caller did wrong, and each HTTP front end maps them to a
// status code in one place.
var (
	// ErrNotFound: the thing asked about does not exist (404).
	ErrNotFound = errors.New("not found")
	// ErrBadRequest: the request is malformed or contradicts itself (400).
	ErrBadRequest = errors.New("bad request")
	// ErrUnauthorized: credentials are missing, wrong, expired or revoked
	// (401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the caller is known but may not do this, e.g. a write
	// with a read-only token or at a peer without a write key (403).
	ErrForbidden = errors.New("forbidden")
	// ErrTooMany: the caller (or callers like it) asks faster than the
	// peer answers this kind of request; try again later (429).
	ErrTooMany = errors.New("too many requests")
	// ErrNoSpace: the peer has no room for what the request needs on its
	// own disk (507).
	ErrNoSpace = errors.New("insufficient storage")
)
