package httpserve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/pinring/pinring/api"
)

func TestStatusOf(t *testing.T) {
	for err, want := range map[error]int{
		nil:                                      200,
		fmt.Errorf("%w: pin x", api.ErrNotFound): 404,
		fmt.Errorf("%w: bad limit", api.ErrBadRequest):  400,
		fmt.Errorf("x: %w", api.ErrBadCid):              400,
		fmt.Errorf("x: %w", api.ErrBadPin):              400,
		fmt.Errorf("%w: no token", api.ErrUnauthorized): 401,
		fmt.Errorf("%w: read-only", api.ErrForbidden):   403,
		fmt.Errorf("x: %w", context.DeadlineExceeded):   503,
		errors.New("disk on fire"):                      500,
	} {
		if got := StatusOf(err); got != want {
			t.Errorf("%v: %d, want %d", err, got, want)
		}
	}
}

func TestAuthenticate(t *testing.T) {
	auth := func(r *http.Request, write bool) error {
		switch r.Header.Get("Authorization") {
		case "":
			return fmt.Errorf("%w: no credentials", api.ErrUnauthorized)
		case "ro":
			if write {
				return fmt.Errorf("%w: read-only", api.ErrForbidden)
			}
		}
		return nil
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	refuse := func(w http.ResponseWriter, code int, err error) { http.Error(w, err.Error(), code) }
	h := Authenticate(auth, func(r *http.Request) bool { return r.Method == http.MethodPost }, refuse, ok)
	for _, tc := range []struct {
		method, cred string
		want         int
	}{
		{"GET", "", 401}, {"GET", "ro", 418}, {"POST", "ro", 403}, {"POST", "rw", 418},
	} {
		r := httptest.NewRequest(tc.method, "/", nil)
		if tc.cred != "" {
			r.Header.Set("Authorization", tc.cred)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s with %q: %d, want %d", tc.method, tc.cred, w.Code, tc.want)
		}
	}
	if Authenticate(nil, nil, nil, ok) == nil {
		t.Fatal("no auth must pass requests through")
	}
}
