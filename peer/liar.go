//go:build pinring_liar

package peer

import (
	"github.com/pinring/pinring/internal/liar"
	"github.com/pinring/pinring/pintracker"
)

// A peer built with -tags pinring_liar is the dishonest follower of the
// audit tests (e2e TestAuditsCatchLiars): its tracker says it pinned what
// it is allocated, and lists it as pinned, but never asks kubo, so kubo
// never holds the data. Never built into a release.
func init() {
	trackerIPFS = func(k pintracker.IPFS) pintracker.IPFS {
		logger.Errorf("THIS PEER IS BUILT TO LIE (pinring_liar): it pins nothing and says it does")
		return liar.Wrap(k)
	}
}
