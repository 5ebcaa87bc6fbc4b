package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseListen(t *testing.T) {
	for in, want := range map[string]string{
		"/ip4/127.0.0.1/tcp/9094": "127.0.0.1:9094",
		"127.0.0.1:9094":          "127.0.0.1:9094",
		"/ip6/::1/tcp/1":          "[::1]:1",
		"localhost:0":             "localhost:0",
	} {
		if got, err := ParseListen(in); err != nil || got != want {
			t.Errorf("ParseListen(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "9094", "/ip4/127.0.0.1", "/ip4/127.0.0.1/udp/1", "host:port", "/nonsense"} {
		if _, err := ParseListen(bad); err == nil {
			t.Errorf("ParseListen(%q) accepted", bad)
		}
	}
}

type section struct {
	S  string            `json:"s"`
	N  int               `json:"n"`
	U  uint64            `json:"u"`
	B  bool              `json:"b"`
	D  Duration          `json:"d"`
	L  []string          `json:"l"`
	M  map[string]string `json:"m"`
	F  float64           `json:"f"`
	DL []Duration        `json:"dl"`
}

type root struct {
	Sec section `json:"sec"`
}

func TestApplyEnvSetsEveryKind(t *testing.T) {
	env := map[string]string{
		"PINRING_SEC_S": "x", "PINRING_SEC_N": "-3", "PINRING_SEC_U": "7", "PINRING_SEC_B": "true",
		"PINRING_SEC_D": "90s", "PINRING_SEC_L": "a, b,", "PINRING_SEC_M": "k=v,x=y", "PINRING_SEC_F": "0.5",
		"PINRING_SEC_DL": "1s,2m",
	}
	var r root
	if err := ApplyEnv(&r, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	s := r.Sec
	if s.S != "x" || s.N != -3 || s.U != 7 || !s.B || s.D.D() != 90*time.Second || len(s.L) != 2 ||
		s.M["x"] != "y" || s.F != 0.5 || len(s.DL) != 2 || s.DL[1].D() != 2*time.Minute {
		t.Fatalf("got %+v", s)
	}
}

func TestApplyEnvErrorsNameKeyAndValue(t *testing.T) {
	for k, v := range map[string]string{"PINRING_SEC_N": "x", "PINRING_SEC_U": "-1", "PINRING_SEC_B": "yes please",
		"PINRING_SEC_D": "soon", "PINRING_SEC_M": "novalue", "PINRING_SEC_DL": "1s,later"} {
		var r root
		err := ApplyEnv(&r, func(key string) (string, bool) { return v, key == k })
		if err == nil || !strings.Contains(err.Error(), k) || !strings.Contains(err.Error(), v) {
			t.Errorf("%s=%s: %v", k, v, err)
		}
	}
}
