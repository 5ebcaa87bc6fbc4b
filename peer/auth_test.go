package peer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinring/pinring/api"
	"github.com/pinring/pinring/internal/testkit"
	"github.com/pinring/pinring/peerconfig"
	"github.com/pinring/pinring/restapi/auth"
	"github.com/pinring/pinring/restapi/client"
)

// selfSigned writes a certificate for 127.0.0.1 and returns the files and
// a pool that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pinring test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// Every way of calling without the right to: 401 or 403 with a message,
// and the pinset does not change. Over HTTPS.
func TestAPIAuthAndTLS(t *testing.T) {
	ctx := context.Background()
	certFile, keyFile, pool := selfSigned(t)
	hash, _ := auth.HashPassword("s3cret")
	p := startClusterPeerWith(t, "auth", newWriteKey(t), nil, func(c *peerconfig.Config) {
		c.API.BasicAuthCredentials = map[string]string{"admin": hash}
		c.API.TLSCertFile, c.API.TLSKeyFile = certFile, keyFile
	})
	as := func(o client.Options) *client.Client {
		o.RootCAs, o.HTTPS = pool, true
		cl, err := client.NewWithOptions(p.APIAddr(), 10*time.Second, o)
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	admin := as(client.Options{BasicAuth: "admin:s3cret"})
	if _, err := admin.Pin(ctx, testkit.Cid(1), api.PinOptions{}); err != nil {
		t.Fatalf("pin with the password: %v", err)
	}
	rw, err := admin.TokenNew(ctx, time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	ro, _ := admin.TokenNew(ctx, time.Hour, true)
	short, _ := admin.TokenNew(ctx, time.Second, false)
	revoked, _ := admin.TokenNew(ctx, time.Hour, false)
	if _, err := admin.TokenRevoke(ctx, revoked.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := as(client.Options{Token: rw.Token}).Pin(ctx, testkit.Cid(2), api.PinOptions{}); err != nil {
		t.Fatalf("pin with a token: %v", err)
	}
	if _, err := as(client.Options{Token: ro.Token}).Allocation(ctx, testkit.Cid(1)); err != nil {
		t.Fatalf("read with a read-only token: %v", err)
	}
	before, _ := p.Digest(ctx)
	// The short token expires (a read with it is refused) a second after
	// it was issued.
	testkit.WaitFor(t, 10*time.Second, "the short token to expire", func() bool {
		_, err := as(client.Options{Token: short.Token}).Allocation(ctx, testkit.Cid(1))
		var apiErr api.Error
		return errors.As(err, &apiErr) && apiErr.Code == 401
	})
	for _, tc := range []struct {
		name   string
		o      client.Options
		code   int
		saying string
	}{
		{"no credentials", client.Options{}, 401, "authentication required"},
		{"wrong password", client.Options{BasicAuth: "admin:guess"}, 401, "wrong user name or password"},
		{"expired token", client.Options{Token: short.Token}, 401, "expired"},
		{"revoked token", client.Options{Token: revoked.Token}, 401, "revoked"},
		{"read-only token writing", client.Options{Token: ro.Token}, 403, "read-only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := as(tc.o).Pin(ctx, testkit.Cid(3), api.PinOptions{})
			var apiErr api.Error
			if !errors.As(err, &apiErr) || apiErr.Code != tc.code || !strings.Contains(apiErr.Message, tc.saying) {
				t.Fatalf("got %v, want %d saying %q", err, tc.code, tc.saying)
			}
		})
	}
	if _, err := as(client.Options{Token: ro.Token}).TokenNew(ctx, time.Hour, false); err == nil {
		t.Fatal("a token minted another token")
	}
	if after, _ := p.Digest(ctx); after != before {
		t.Fatalf("refused requests changed the pinset: %+v → %+v", before, after)
	}
	// Plain HTTP to the HTTPS API fails, and so does HTTPS without trusting
	// its certificate.
	for name, o := range map[string]client.Options{
		"plain HTTP":            {BasicAuth: "admin:s3cret"},
		"untrusted certificate": {HTTPS: true, BasicAuth: "admin:s3cret"},
	} {
		cl, err := client.NewWithOptions(p.APIAddr(), 5*time.Second, o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.ID(ctx); err == nil {
			t.Fatalf("%s reached the HTTPS API", name)
		}
	}
}

func TestListeningBeyondLoopbackNeedsAuth(t *testing.T) {
	cfg := peerconfig.DefaultConfig()
	for _, listen := range []string{"/ip4/0.0.0.0/tcp/9094", "192.0.2.1:9094"} {
		cfg.API.Listen = listen
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "basic_auth_credentials") {
			t.Fatalf("api.listen %s without auth: %v", listen, err)
		}
	}
	cfg.API.Listen = "/ip4/127.0.0.1/tcp/9094"
	cfg.PinSvc.Listen = "0.0.0.0:9097"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "pinsvc.listen") {
		t.Fatalf("pinsvc.listen beyond loopback without auth: %v", err)
	}
	hash, _ := auth.HashPassword("pw")
	cfg.API.BasicAuthCredentials = map[string]string{"admin": hash}
	cfg.API.Listen = "/ip4/0.0.0.0/tcp/9094"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("with auth: %v", err)
	}
}

// The Pinning Service API and the IPFS proxy take the REST API's users and
// tokens: a read-only token lists but cannot pin; no token gets 401.
func TestPinSvcAndProxyShareAuth(t *testing.T) {
	ctx := context.Background()
	hash, _ := auth.HashPassword("pw")
	p := startClusterPeerWith(t, "auth2", newWriteKey(t), nil, func(c *peerconfig.Config) {
		c.API.BasicAuthCredentials = map[string]string{"admin": hash}
		c.PinSvc.Listen = "127.0.0.1:0"
		c.Proxy.Listen = "127.0.0.1:0"
	})
	admin, _ := client.NewWithOptions(p.APIAddr(), 10*time.Second, client.Options{BasicAuth: "admin:pw"})
	rw, err := admin.TokenNew(ctx, time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	ro, _ := admin.TokenNew(ctx, time.Hour, true)
	call := func(method, url, token string) int {
		req, _ := http.NewRequest(method, url, strings.NewReader(`{"cid":"`+testkit.Cid(5).String()+`"}`))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	svc := "http://" + p.PinSvcAddr() + "/pins"
	for _, tc := range []struct {
		method, url, token string
		want               int
	}{
		{"GET", svc, "", 401},
		{"GET", svc, "made-up", 401},
		{"GET", svc, ro.Token, 200},
		{"POST", svc, ro.Token, 403},
		{"POST", "http://" + p.ProxyAddr() + "/api/v0/pin/add?arg=" + testkit.Cid(6).String(), ro.Token, 403},
		{"POST", "http://" + p.ProxyAddr() + "/api/v0/pin/ls", "", 401},
		{"POST", svc, rw.Token, 202},
	} {
		if got := call(tc.method, tc.url, tc.token); got != tc.want {
			t.Errorf("%s %s with %q: %d, want %d", tc.method, tc.url, tc.token, got, tc.want)
		}
	}
	if d, _ := p.Digest(ctx); d.Pins != 1 {
		t.Fatalf("%d pins, want only the one the read-write token made", d.Pins)
	}
}
