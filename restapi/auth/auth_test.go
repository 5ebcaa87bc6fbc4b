package auth

import (
	"errors"
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
	if _, err := a.Revoke(revoked.ID); err != nil {
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
	if _, err := a.Revoke(tok.Token); err != nil {
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
