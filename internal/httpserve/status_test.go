package httpserve

import (
	"context"
	"errors"
	"fmt"
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
