package auth

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
)

func newAuth(t *testing.T) (*Auth, *time.Time) {
	t.Helper()
	h, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a, err := New(map[string]string{"admin": h}, filepath.Join(dir, "token.key"), filepath.Join(dir, "revoked"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	return a, &now
}

func req(hdr string) *http.Request {
	r, _ := http.NewRequest("GET", "http://x/", nil)
	if hdr != "" {
		r.Header.Set("Authorization", hdr)
	}
	return r
}

func basic(user, pass string) string {
	r, _ := http.NewRequest("GET", "http://x/", nil)
	r.SetBasicAuth(user, pass)
	return r.Header.Get("Authorization")
}

func TestChecks(t *testing.T) {
	a, now := newAuth(t)
	rw, err := a.Issue("admin", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	ro, _ := a.Issue("admin", time.Hour, true)
	short, _ := a.Issue("admin", time.Minute, false)
	other, _ := newAuth(t)
	foreign, _ := other.Issue("admin", time.Hour, false)
	revoked, _ := a.Issue("admin", time.Hour, false)
	if _, err := a.Revoke(revoked.ID, Caller{User: "admin", Basic: true}); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(2 * time.Minute) // short has expired
	for _, tc := range []struct {
		name   string
		hdr    string
		write  bool
		want   error
		saying string
	}{
		{"password", basic("admin", "s3cret"), true, nil, ""},
		{"wrong password", basic("admin", "nope"), false, api.ErrUnauthorized, "wrong user name or password"},
		{"unknown user", basic("eve", "s3cret"), false, api.ErrUnauthorized, "wrong user name or password"},
		{"no credentials", "", false, api.ErrUnauthorized, "authentication required"},
		{"odd scheme", "Digest abc", false, api.ErrUnauthorized, "unsupported"},
		{"token", "Bearer " + rw.Token, true, nil, ""},
		{"read-only token reading", "Bearer " + ro.Token, false, nil, ""},
		{"read-only token writing", "Bearer " + ro.Token, true, api.ErrForbidden, "read-only"},
		{"expired token", "Bearer " + short.Token, false, api.ErrUnauthorized, "expired"},
		{"revoked token", "Bearer " + revoked.Token, false, api.ErrUnauthorized, "revoked"},
		{"another peer's token", "Bearer " + foreign.Token, false, api.ErrUnauthorized, "not valid here"},
		{"altered token", "Bearer " + rw.Token[:len(rw.Token)-2] + "xx", false, api.ErrUnauthorized, "not valid here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Check(req(tc.hdr), tc.write)
			if !errors.Is(err, tc.want) || tc.want != nil && !strings.Contains(err.Error(), tc.saying) {
				t.Fatalf("got %v, want %v saying %q", err, tc.want, tc.saying)
			}
		})
	}
}

func TestRevocationSurvivesRestart(t *testing.T) {
	h, _ := HashPassword("pw")
	dir := t.TempDir()
	key, rev := filepath.Join(dir, "k"), filepath.Join(dir, "r")
	a, err := New(map[string]string{"u": h}, key, rev)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := a.Issue("u", time.Hour, false)
	if _, err := a.Revoke(tok.Token, Caller{User: "u", Basic: true}); err != nil {
		t.Fatal(err)
	}
	b, err := New(map[string]string{"u": h}, key, rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Check(req("Bearer "+tok.Token), false); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("a revoked token after restart: %v", err)
	}
	fresh, _ := b.Issue("u", time.Hour, false)
	if _, err := b.Check(req("Bearer "+fresh.Token), true); err != nil {
		t.Fatalf("a fresh token after restart: %v", err)
	}
}

func TestOffAndBadConfig(t *testing.T) {
	a, err := New(nil, "", "")
	if err != nil || a.Enabled() {
		t.Fatalf("no users: %v", err)
	}
	if _, err := a.Check(req(""), true); err != nil {
		t.Fatalf("auth off refused: %v", err)
	}
	if _, err := New(map[string]string{"u": "plaintext"}, "", ""); err == nil || !strings.Contains(err.Error(), "bcrypt") {
		t.Fatalf("a plain password in the config: %v", err)
	}
}

// A token key others may read is refused at start, saying how to fix it:
// whoever reads it can mint tokens. Before, it was used.
func TestTokenKeyReadableByOthersIsRefused(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "token.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("ab", 32)), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(map[string]string{"u": h}, key, filepath.Join(dir, "revoked"))
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+key) {
		t.Fatalf("a token key of mode 644: %v, want a refusal saying chmod 600", err)
	}
	os.Chmod(key, 0o600)
	if _, err := New(map[string]string{"u": h}, key, filepath.Join(dir, "revoked")); err != nil {
		t.Fatal(err)
	}
}

// A token may revoke its own user's tokens, given whole, and nothing else;
// a token's lifetime is bounded; the revoked list is bounded. Before, any
// read-write token revoked anyone's tokens by ID, and lived as long as asked.
func TestTokensCannotRevokeOthers(t *testing.T) {
	h, _ := HashPassword("pw")
	dir := t.TempDir()
	a, err := New(map[string]string{"alice": h, "bob": h}, filepath.Join(dir, "token.key"), filepath.Join(dir, "revoked"))
	if err != nil {
		t.Fatal(err)
	}
	bobs, _ := a.Issue("bob", time.Hour, false)
	alices, _ := a.Issue("alice", time.Hour, false)
	alice := Caller{User: "alice"} // with a token
	if _, err := a.Revoke(bobs.Token, alice); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("alice's token revoking bob's: %v, want forbidden", err)
	}
	if _, err := a.Revoke(bobs.ID, alice); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("alice's token revoking by ID: %v, want forbidden", err)
	}
	if _, err := a.Revoke(alices.Token, alice); err != nil {
		t.Fatalf("alice's token revoking alice's: %v", err)
	}
	if _, err := a.Revoke(bobs.ID, Caller{User: "alice", Basic: true}); err != nil {
		t.Fatalf("alice's password revoking bob's by ID: %v", err)
	}
	if _, err := a.Issue("alice", MaxTokenTTL+time.Hour, false); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("a token for longer than MaxTokenTTL: %v, want a bad request", err)
	}
	for i := range maxRevoked {
		a.revoked[fmt.Sprint("filler", i)] = time.Now().Add(time.Hour)
	}
	if _, err := a.Revoke("one-more", Caller{User: "alice", Basic: true}); !errors.Is(err, api.ErrTooMany) {
		t.Fatalf("revoking past %d live revocations: %v, want too many", maxRevoked, err)
	}
}

// A password sent with every request costs one bcrypt, not one a request;
// wrong guesses each cost one, at most bcryptsAtOnce at a time.
func TestPasswordChecksAreRemembered(t *testing.T) {
	a, _ := newAuth(t)
	r := req("")
	r.SetBasicAuth("admin", "s3cret")
	start := time.Now()
	for range 50 {
		if _, err := a.Check(r, true); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	if len(a.verified) != 1 {
		t.Fatalf("%d passwords remembered after 50 requests with one, want 1", len(a.verified))
	}
	// With every check slot taken (guesses in flight), a new check waits,
	// then is told to come back; a remembered password still passes.
	for range bcryptsAtOnce {
		a.bcrypts <- struct{}{}
	}
	busy := req("")
	busy.SetBasicAuth("admin", "another guess")
	if _, err := a.Check(busy, false); !errors.Is(err, api.ErrTooMany) {
		t.Fatalf("a password check with every slot taken: %v, want too many", err)
	}
	if _, err := a.Check(r, false); err != nil {
		t.Fatalf("the remembered password with every slot taken: %v", err)
	}
	for range bcryptsAtOnce {
		<-a.bcrypts
	}
	wrong := req("")
	wrong.SetBasicAuth("admin", "guess")
	if _, err := a.Check(wrong, false); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("a wrong password: %v", err)
	}
	t.Logf("50 requests with the right password: %s", took.Round(time.Millisecond))
}
