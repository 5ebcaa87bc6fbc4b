package peer

import (
	"context"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/config"
	"github.com/pinring/pinring/internal/testkit"
	"github.com/pinring/pinring/peerconfig"
)

// A pin written with an expiry before a restart expires after it: the
// restarted peer was never told of it (no change passed through onChange),
// so only its survey of the pinset knows the pass is due.
func TestRestartedPeerExpiresPinsItHeld(t *testing.T) {
	ctx := context.Background()
	key := newWriteKey(t)
	cfg, dir := clusterPeerConfig(t, "expiry", key, nil, func(c *peerconfig.Config) {
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
	testkit.WaitFor(t, time.Until(at)+30*time.Second, "the pin that expired to go after the restart", func() bool {
		_, err := p.PinGet(ctx, gone)
		return err != nil
	})
	if time.Now().Before(at) {
		t.Fatal("the pin was removed before it expired")
	}
	if _, err := p.PinGet(ctx, keep); err != nil {
		t.Fatalf("the pin without expiry: %s", err)
	}
}

// Replace pins the new CID before it removes the old one, and keeps a pin
// replaced by itself.
func TestReplace(t *testing.T) {
	ctx := context.Background()
	key := newWriteKey(t)
	cfg, dir := clusterPeerConfig(t, "replace", key, nil, nil)
	p, err := New(ctx, cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	old, next := testkit.Cid(1), testkit.Cid(2)
	if _, err := p.Pin(ctx, api.Pin{Cid: old, Type: api.DataType, MaxDepth: -1, PinOptions: api.PinOptions{Name: "v1"}}); err != nil {
		t.Fatal(err)
	}
	stored, err := p.Replace(ctx, old, api.Pin{Cid: next, Type: api.DataType, MaxDepth: -1, PinOptions: api.PinOptions{PinUpdate: old}})
	if err != nil || !stored.Cid.Equals(next.Cid) || stored.Name != "v1" {
		t.Fatalf("replace: %+v, %v (want the new CID with the old one's name)", stored, err)
	}
	if _, err := p.PinGet(ctx, old); err == nil {
		t.Fatal("the replaced pin is still there")
	}
	if _, err := p.Replace(ctx, next, api.Pin{Cid: next, Type: api.DataType, MaxDepth: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.PinGet(ctx, next); err != nil {
		t.Fatalf("a pin replaced by itself is gone: %v", err)
	}
	// The old one gone already is no error.
	if _, err := p.Replace(ctx, old, api.Pin{Cid: testkit.Cid(3), Type: api.DataType, MaxDepth: -1}); err != nil {
		t.Fatalf("replacing a pin already gone: %v", err)
	}
}
