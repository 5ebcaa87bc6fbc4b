package trust

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	"github.com/multiformats/go-multibase"
)

func mustKey(t *testing.T) *WriteKey {
	t.Helper()
	k, err := NewWriteKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestPublicKeyText(t *testing.T) {
	k := mustKey(t)
	s := k.Public().String()
	if !strings.HasPrefix(s, "z6Mk") {
		t.Fatalf("public key %q: want the did:key form z6Mk…", s)
	}
	for _, in := range []string{s, "did:key:" + s, " " + s + "\n"} {
		p, err := ParsePublicKey(in)
		if err != nil || !p.Equal(k.Public()) {
			t.Fatalf("parse %q: %v", in, err)
		}
	}
	for _, bad := range []string{"", "z6Mk", s[:len(s)-3], "Qmfoo", "b" + s[1:], "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"} {
		if _, err := ParsePublicKey(bad); !errors.Is(err, ErrBadPublicKey) {
			t.Errorf("parse %q: %v, want ErrBadPublicKey", bad, err)
		}
	}
	if strings.Contains(k.String(), string(k.priv)) || !strings.Contains(k.String(), s) {
		t.Fatalf("String of a write key: %q", k.String())
	}
}

func TestWriteKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "write.key")
	k := mustKey(t)
	if err := k.Save(path, false); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v, want 0600", st.Mode(), err)
	}
	if err := mustKey(t).Save(path, false); err == nil {
		t.Fatal("Save replaced an existing key without overwrite")
	}
	back, err := LoadWriteKey(path)
	if err != nil || !back.Public().Equal(k.Public()) {
		t.Fatalf("load: %v", err)
	}
	msg := []byte("hello")
	if !k.Public().Verify(msg, back.Sign(msg)) {
		t.Fatal("loaded key signs differently")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadWriteKey(path); !errors.Is(err, ErrKeyFileMode) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key: %v", err)
	}
	if _, err := LoadWriteKey(filepath.Join(dir, "none")); !IsNotExist(err) {
		t.Fatalf("missing key: %v", err)
	}
	other := filepath.Join(dir, "other")
	os.WriteFile(other, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	if _, err := LoadWriteKey(other); !errors.Is(err, ErrBadKeyFile) {
		t.Fatalf("foreign PEM: %v", err)
	}
}

func sampleTicket(t *testing.T) Ticket {
	a, _ := ma.NewMultiaddr("/ip4/192.0.2.7/tcp/9096/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
	return Ticket{Cluster: "archive", WriteKeys: []PublicKey{mustKey(t).Public(), mustKey(t).Public()},
		Bootstrap: []ma.Multiaddr{a}, Secret: bytes.Repeat([]byte{7}, SecretSize)}
}

func TestTicketRoundTrip(t *testing.T) {
	in := sampleTicket(t)
	s := in.String()
	if !strings.HasPrefix(s, "b") || strings.ToLower(s) != s {
		t.Fatalf("ticket %q: want lower-case base32 multibase", s)
	}
	out, err := ParseTicket(s)
	if err != nil {
		t.Fatal(err)
	}
	if out.Cluster != in.Cluster || len(out.WriteKeys) != 2 || !out.WriteKeys[1].Equal(in.WriteKeys[1]) ||
		len(out.Bootstrap) != 1 || !out.Bootstrap[0].Equal(in.Bootstrap[0]) || !bytes.Equal(out.Secret, in.Secret) {
		t.Fatalf("round trip: %+v", out)
	}
	// Wrapped over lines by a mail client: still one ticket.
	if _, err := ParseTicket(s[:40] + "\n  " + s[40:]); err != nil {
		t.Fatal(err)
	}
	// No secret: an open network.
	in.Secret = nil
	if out, err := ParseTicket(in.String()); err != nil || out.Secret != nil {
		t.Fatalf("open ticket: %v %v", out.Secret, err)
	}
}

// reencode builds a ticket string from raw body bytes with a valid checksum.
func reencode(body []byte) string {
	sum := sha256.Sum256(body)
	s, _ := multibase.Encode(multibase.Base32, append(body, sum[:checksumSize]...))
	return s
}

func TestTicketRejects(t *testing.T) {
	good := sampleTicket(t).String()
	flip := []byte(good)
	if flip[30] == 'a' {
		flip[30] = 'b'
	} else {
		flip[30] = 'a'
	}
	_, raw, _ := multibase.Decode(good)
	body := raw[:len(raw)-checksumSize]
	newer := bytes.Clone(body)
	newer[len(ticketMagic)] = 9
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "  ", "empty"},
		{"foreign string", "hello world", "not a Pinring ticket"},
		{"a CID", "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "foreign content"},
		{"a peer ID", "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA", "not a Pinring ticket"},
		{"truncated", good[:len(good)-9], "truncated"},
		{"cut short", good[:12], "truncated"},
		{"one character changed", string(flip), "corrupted"},
		{"newer format", reencode(newer), "newer than this program"},
		{"no cluster", reencode(append(bytes.Clone(ticketMagic), ticketVersion)), "names no cluster"},
		{"no key", reencode(appendField(append(bytes.Clone(ticketMagic), ticketVersion), tCluster, []byte("x"))), "no write public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTicket(tc.in)
			if !errors.Is(err, ErrBadTicket) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrBadTicket saying %q", err, tc.want)
			}
		})
	}
}

func TestEnvelopeChecks(t *testing.T) {
	curator, stranger := mustKey(t), mustKey(t)
	keys := KeySet{}.With(curator.Public())
	s := NewSigner(curator, "archive", "peerA")
	payload := []byte("heads")
	good := s.Seal(payload)
	tampered := bytes.Clone(good)
	tampered[bytes.Index(tampered, payload)] ^= 1
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"garbage", []byte("not an envelope"), ErrUnsigned},
		{"bare payload", payload, ErrUnsigned},
		{"empty", nil, ErrUnsigned},
		{"signature cut off", good[:len(good)-10], ErrUnsigned},
		{"trailing bytes", append(bytes.Clone(good), 1, 2), ErrUnsigned},
		{"payload changed", tampered, ErrBadSignature},
		{"another cluster", NewSigner(curator, "other", "peerA").Seal(payload), ErrWrongCluster},
		{"unknown key", NewSigner(stranger, "archive", "peerA").Seal(payload), ErrUnknownKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := NewVerifier("archive", keys)
			if _, err := v.Check(tc.in, true); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}

	v := NewVerifier("archive", keys)
	e, err := v.Check(good, true)
	if err != nil || !bytes.Equal(e.Payload, payload) || e.Origin != "peerA" || !e.Key.Equal(curator.Public()) {
		t.Fatalf("good envelope: %+v %v", e, err)
	}
	if _, err := v.Check(good, true); !errors.Is(err, ErrReplay) {
		t.Fatalf("the same envelope again: %v, want ErrReplay", err)
	}
	if _, err := v.Check(good, false); err != nil {
		t.Fatalf("without the replay check: %v", err)
	}
	next := s.Seal(payload)
	if _, err := v.Check(next, true); err != nil {
		t.Fatalf("a newer envelope: %v", err)
	}
	if _, err := v.Check(good, true); !errors.Is(err, ErrReplay) {
		t.Fatalf("an older envelope after a newer one: %v", err)
	}
	// Another origin with the same key has its own sequence.
	if _, err := v.Check(NewSigner(curator, "archive", "peerB").Seal(payload), true); err != nil {
		t.Fatal(err)
	}
}

// An epoch record and a head announcement are signed for different
// purposes: neither verifies as the other, so a writer's signed heads
// cannot be replayed as an epoch record nor the reverse.
func TestEpochEnvelopesAreTheirOwnDomain(t *testing.T) {
	curator, stranger := mustKey(t), mustKey(t)
	v := NewVerifier("archive", KeySet{}.With(curator.Public()))
	s := NewSigner(curator, "archive", "peerA")
	rec := s.SealEpoch([]byte(`{"epoch":1}`))
	if e, err := v.CheckEpoch(rec); err != nil || string(e.Payload) != `{"epoch":1}` {
		t.Fatalf("an epoch record: %v", err)
	}
	if _, err := v.Check(rec, false); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("an epoch record as heads: %v, want ErrBadSignature", err)
	}
	if _, err := v.CheckEpoch(s.Seal([]byte(`{"epoch":1}`))); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("heads as an epoch record: %v, want ErrBadSignature", err)
	}
	if _, err := v.CheckEpoch(NewSigner(stranger, "archive", "peerA").SealEpoch([]byte(`{"epoch":9}`))); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("an epoch record signed by a stranger: %v, want ErrUnknownKey", err)
	}
}

func TestSignerSequenceIsStrictlyIncreasing(t *testing.T) {
	s := NewSigner(mustKey(t), "c", "p")
	frozen := time.Unix(100, 0)
	s.now = func() time.Time { return frozen }
	v := NewVerifier("c", KeySet{}.With(s.Key()))
	for range 3 {
		if _, err := v.Check(s.Seal(nil), true); err != nil {
			t.Fatalf("same clock reading: %v", err)
		}
	}
}

// One envelope dated a day ahead (a writer's clock wrong for a moment) is
// refused and not remembered: the writer's envelopes once its clock is
// right still count. Before, the future sequence was remembered and every
// later envelope of that writer was refused as a replay until every peer
// restarted.
func TestFutureDatedEnvelopeSilencesNobody(t *testing.T) {
	key := mustKey(t)
	now := time.Now()
	v := NewVerifier("c", KeySet{}.With(key.Public()))
	v.Now = func() time.Time { return now }
	wrong := NewSigner(key, "c", "p")
	wrong.now = func() time.Time { return now.Add(24 * time.Hour) }
	if _, err := v.Check(wrong.Seal(nil), true); !errors.Is(err, ErrFuture) {
		t.Fatalf("an envelope a day ahead: %v, want ErrFuture", err)
	}
	right := NewSigner(key, "c", "p")
	right.now = func() time.Time { return now }
	if _, err := v.Check(right.Seal(nil), true); err != nil {
		t.Fatalf("the writer's next envelope, its clock right again: %v", err)
	}
	// A few minutes ahead is clock skew, and counts.
	skewed := NewSigner(key, "c", "q")
	skewed.now = func() time.Time { return now.Add(5 * time.Minute) }
	if _, err := v.Check(skewed.Seal(nil), true); err != nil {
		t.Fatalf("an envelope 5 minutes ahead: %v", err)
	}
}

func TestEndorsement(t *testing.T) {
	k, other := mustKey(t), mustKey(t)
	ks := KeySet{}.With(k.Public())
	sig := k.Endorse("archive", "peerA")
	if !ks.CheckEndorsement("archive", "peerA", k.Public(), sig) {
		t.Fatal("a valid endorsement was refused")
	}
	for _, tc := range []struct {
		cluster, peer string
		key           PublicKey
		sig           []byte
	}{
		{"archive", "peerB", k.Public(), sig},
		{"other", "peerA", k.Public(), sig},
		{"archive", "peerA", other.Public(), other.Endorse("archive", "peerA")},
		{"archive", "peerA", k.Public(), sig[:10]},
	} {
		if ks.CheckEndorsement(tc.cluster, tc.peer, tc.key, tc.sig) {
			t.Errorf("accepted %+v", tc)
		}
	}
}

func TestKeySet(t *testing.T) {
	a, b := mustKey(t).Public(), mustKey(t).Public()
	ks, err := NewKeySet([]string{a.String(), b.String(), a.String()})
	if err != nil || ks.Len() != 2 || !ks.Has(b) {
		t.Fatalf("%v %v", ks.Strings(), err)
	}
	if _, err := NewKeySet([]string{"nope"}); !errors.Is(err, ErrBadPublicKey) {
		t.Fatal(err)
	}
}
