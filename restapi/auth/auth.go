// Package auth checks who calls a peer's APIs: basic auth against users
// whose passwords are stored as bcrypt hashes, and bearer tokens (JWT,
// HS256, signed with a key only this peer holds) that expire, can be
// read-only, and can be revoked. With no users configured, auth is off
// (and the peer refuses to listen beyond loopback).
package auth

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/trust"
)

// Claims are what a token says.
type Claims struct {
	jwt.RegisteredClaims
	ReadOnly bool `json:"ro,omitempty"`
}

// Token is what a new token is answered with (api.Token).
type Token = api.Token

// Auth checks requests. It is safe for concurrent use.
type Auth struct {
	users       map[string][]byte
	dummy       []byte // a hash to compare against for unknown users
	key         []byte
	revokedPath string
	now         func() time.Time

	mu      sync.Mutex
	revoked map[string]time.Time // token ID → its expiry (forgotten after)
	// verified are passwords checked lately, by an HMAC of user and
	// password under key: a client that sends its password with every
	// request (ipfs-cluster-ctl) costs one bcrypt in passwordMemory.
	verified map[[32]byte]time.Time
	// bcrypts bounds the password checks running at once: each costs
	// ~50 ms of a core, and guesses must not take the peer's CPU.
	bcrypts chan struct{}
}

const (
	// passwordMemory is how long a checked password is remembered;
	// maxVerified how many are.
	passwordMemory = 10 * time.Minute
	maxVerified    = 256
	// bcryptsAtOnce is how many password checks run at once; a check
	// that waits longer than bcryptWait is answered 429.
	bcryptsAtOnce = 2
	bcryptWait    = 2 * time.Second
	// MaxTokenTTL bounds a token's lifetime.
	MaxTokenTTL = 366 * 24 * time.Hour
	// maxRevoked bounds the revoked tokens remembered (until they expire).
	maxRevoked = 10_000
)

// HashPassword returns the bcrypt hash to put in api.basic_auth_credentials.
func HashPassword(password string) (string, error) {
	if password == "" {
		return "", errors.New("the password is empty")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	return string(h), err
}

// New makes the checker: users maps names to bcrypt hashes; keyPath holds
// the token signing key (created, 0600, when missing); revokedPath the
// revoked token IDs.
func New(users map[string]string, keyPath, revokedPath string) (*Auth, error) {
	a := &Auth{users: map[string][]byte{}, revokedPath: revokedPath, now: time.Now, revoked: map[string]time.Time{},
		verified: map[[32]byte]time.Time{}, bcrypts: make(chan struct{}, bcryptsAtOnce)}
	for u, h := range users {
		if _, err := bcrypt.Cost([]byte(h)); err != nil {
			return nil, fmt.Errorf("api.basic_auth_credentials: the password of %q is not a bcrypt hash (make one with 'cluster-peer hash-password')", u)
		}
		a.users[u] = []byte(h)
	}
	if !a.Enabled() {
		return a, nil
	}
	if err := trust.CheckKeyFileMode(keyPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key, err := os.ReadFile(keyPath)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.WriteFile(keyPath, []byte(hex.EncodeToString(key)), 0o600); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	} else if key, err = hex.DecodeString(strings.TrimSpace(string(key))); err != nil || len(key) < 32 {
		return nil, fmt.Errorf("%s is not a token key (64 hex digits)", keyPath)
	}
	a.key = key
	if a.dummy, err = bcrypt.GenerateFromPassword(key[:16], bcrypt.DefaultCost); err != nil {
		return nil, err
	}
	return a, a.loadRevoked()
}

// Enabled reports whether any user is configured.
func (a *Auth) Enabled() bool { return a != nil && len(a.users) > 0 }

func (a *Auth) loadRevoked() error {
	f, err := os.Open(a.revokedPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, exp, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		sec, err := strconv.ParseInt(exp, 10, 64)
		if err != nil || time.Unix(sec, 0).Before(a.now()) {
			continue // expired anyway
		}
		a.revoked[id] = time.Unix(sec, 0)
	}
	return sc.Err()
}

// Issue makes a token for user, valid for ttl.
func (a *Auth) Issue(user string, ttl time.Duration, readOnly bool) (Token, error) {
	if !a.Enabled() {
		return Token{}, errors.New("tokens need auth: configure api.basic_auth_credentials")
	}
	if ttl <= 0 || ttl > MaxTokenTTL {
		return Token{}, fmt.Errorf("%w: the token lifetime must be positive and at most %s", api.ErrBadRequest, MaxTokenTTL)
	}
	idb := make([]byte, 12)
	rand.Read(idb)
	now := a.now()
	c := Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: user, ID: hex.EncodeToString(idb),
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl))}, ReadOnly: readOnly}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(a.key)
	if err != nil {
		return Token{}, err
	}
	return Token{Token: s, ID: c.ID, User: user, ExpiresAt: c.ExpiresAt.Time.UTC(), ReadOnly: readOnly}, nil
}

// parse verifies a token's signature and expiry.
func (a *Auth) parse(s string) (*Claims, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(s, &c, func(*jwt.Token) (any, error) { return a.key, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(a.now), jwt.WithExpirationRequired())
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, fmt.Errorf("%w: the token expired at %s; get a new one with 'cluster-ctl token new'", api.ErrUnauthorized, c.ExpiresAt.Time.UTC().Format(time.RFC3339))
	case err != nil:
		return nil, fmt.Errorf("%w: the token is not valid here (not issued by this peer, or altered)", api.ErrUnauthorized)
	}
	a.mu.Lock()
	_, revoked := a.revoked[c.ID]
	a.mu.Unlock()
	if revoked {
		return nil, fmt.Errorf("%w: the token %s was revoked", api.ErrUnauthorized, c.ID)
	}
	return &c, nil
}

// Revoke makes a token (given whole, or by its ID) invalid from now on,
// durably, as by asks. A user with the password may revoke any token, by
// ID too; a token may revoke only tokens of its own user, given whole.
func (a *Auth) Revoke(tokenOrID string, by Caller) (string, error) {
	if !a.Enabled() {
		return "", errors.New("tokens need auth: configure api.basic_auth_credentials")
	}
	id, exp := tokenOrID, a.now().Add(MaxTokenTTL)
	whole := strings.Count(tokenOrID, ".") == 2
	if whole {
		var c Claims
		if _, err := jwt.ParseWithClaims(tokenOrID, &c, func(*jwt.Token) (any, error) { return a.key, nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(a.now)); err != nil && !errors.Is(err, jwt.ErrTokenExpired) {
			return "", fmt.Errorf("%w: not a token of this peer: %v", api.ErrBadRequest, err)
		}
		if !by.Basic && c.Subject != by.User {
			return "", fmt.Errorf("%w: a token may revoke only tokens of its own user (%q); this one is %q's", api.ErrForbidden, by.User, c.Subject)
		}
		id, exp = c.ID, c.ExpiresAt.Time
	} else if !by.Basic {
		return "", fmt.Errorf("%w: revoking a token by its ID needs a user and password (--basic-auth); with a token, give the whole token to revoke", api.ErrForbidden)
	}
	if id == "" || len(id) > 64 || strings.ContainsAny(id, " \n") {
		return "", fmt.Errorf("%w: %.80q is not a token or a token ID", api.ErrBadRequest, tokenOrID)
	}
	a.mu.Lock()
	if len(a.revoked) >= maxRevoked {
		for rid, e := range a.revoked {
			if e.Before(a.now()) {
				delete(a.revoked, rid)
			}
		}
	}
	full := len(a.revoked) >= maxRevoked
	a.mu.Unlock()
	if full {
		return "", fmt.Errorf("%w: %d revoked tokens have not expired yet; to invalidate every token at once, delete token.key and restart the peer", api.ErrTooMany, maxRevoked)
	}
	f, err := os.OpenFile(a.revokedPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := fmt.Fprintf(f, "%s %d\n", id, exp.Unix()); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	a.mu.Lock()
	a.revoked[id] = exp
	a.mu.Unlock()
	return id, nil
}

// checkPassword checks a user's password: from memory if it was checked
// lately, else with bcrypt, at most bcryptsAtOnce at a time.
func (a *Auth) checkPassword(user, pass string, ok bool) error {
	mac := hmac.New(sha256.New, a.key)
	mac.Write([]byte(user))
	mac.Write([]byte{0})
	mac.Write([]byte(pass))
	var sum [32]byte
	copy(sum[:], mac.Sum(nil))
	now := a.now()
	a.mu.Lock()
	at, seen := a.verified[sum]
	a.mu.Unlock()
	if seen && now.Sub(at) < passwordMemory {
		return nil
	}
	select {
	case a.bcrypts <- struct{}{}:
		defer func() { <-a.bcrypts }()
	case <-time.After(bcryptWait):
		return fmt.Errorf("%w: too many password checks at once; try again in a moment (or use a token: cluster-ctl token new)", api.ErrTooMany)
	}
	hash, known := a.users[user]
	if !ok || !known {
		// Same work for unknown users: no timing oracle for names.
		bcrypt.CompareHashAndPassword(a.dummy, []byte(pass))
		return fmt.Errorf("%w: wrong user name or password", api.ErrUnauthorized)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return fmt.Errorf("%w: wrong user name or password", api.ErrUnauthorized)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.verified) >= maxVerified {
		for k, t := range a.verified {
			if now.Sub(t) >= passwordMemory || len(a.verified) >= maxVerified {
				delete(a.verified, k)
			}
		}
	}
	a.verified[sum] = now
	return nil
}

// Caller is who made a request.
type Caller struct {
	User     string
	ReadOnly bool
	Basic    bool // authenticated with a password (may mint tokens)
}

// Check authenticates r; write says whether the request changes anything.
// With auth off every request passes.
func (a *Auth) Check(r *http.Request, write bool) (Caller, error) {
	if !a.Enabled() {
		return Caller{Basic: true}, nil
	}
	h := r.Header.Get("Authorization")
	switch {
	case strings.HasPrefix(h, "Basic "):
		user, pass, ok := r.BasicAuth()
		if err := a.checkPassword(user, pass, ok); err != nil {
			return Caller{}, err
		}
		return Caller{User: user, Basic: true}, nil
	case strings.HasPrefix(h, "Bearer "):
		c, err := a.parse(strings.TrimSpace(strings.TrimPrefix(h, "Bearer ")))
		if err != nil {
			return Caller{}, err
		}
		if _, ok := a.users[c.Subject]; !ok {
			return Caller{}, fmt.Errorf("%w: the token's user %q no longer exists", api.ErrUnauthorized, c.Subject)
		}
		if c.ReadOnly && write {
			return Caller{}, fmt.Errorf("%w: the token is read-only: it may list and read status, not change anything", api.ErrForbidden)
		}
		return Caller{User: c.Subject, ReadOnly: c.ReadOnly}, nil
	case h == "":
		return Caller{}, fmt.Errorf("%w: authentication required: send a user and password (cluster-ctl --basic-auth user:password) or a token (cluster-ctl --token)", api.ErrUnauthorized)
	}
	return Caller{}, fmt.Errorf("%w: unsupported Authorization scheme (want Basic or Bearer)", api.ErrUnauthorized)
}
