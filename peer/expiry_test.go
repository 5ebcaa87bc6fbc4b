package peer

import (
	"context"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/testkit"
)

// A pin written with an expiry before a restart expires after it: the
// restarted peer was never told of it (no change passed through onChange),
// so only its survey of the pinset knows the pass is due.
func TestRestartedPeerExpiresPinsItHeld(t *testing.T) {
	ctx := context.Background()
	key := newWriteKey(t)
	cfg, dir := clusterPeerConfig(t, "expiry", key, nil, func(c *Config) {
		c.Repair.ExpiryInterval = config.Duration(100 * time.Millisecond)
	})
	p, err := New(ctx, cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	keep, gone := testkit.Cid(1), testkit.Cid(2)
	if _, err := p.Pin(ctx, api.Pin{Cid: keep, Type: api.DataType, MaxDepth: -1}); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(2 * time.Second)
	if _, err := p.Pin(ctx, api.Pin{Cid: gone, Type: api.DataType, MaxDepth: -1, PinOptions: api.PinOptions{ExpireAt: at}}); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p, err = New(ctx, cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	deadline := at.Add(30 * time.Second)
	for {
		if _, err := p.PinGet(ctx, gone); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pin that expired at %s is still there after the restart", at.Format(time.TimeOnly))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if time.Now().Before(at) {
		t.Fatal("the pin was removed before it expired")
	}
	if _, err := p.PinGet(ctx, keep); err != nil {
		t.Fatalf("the pin without expiry: %s", err)
	}
}
