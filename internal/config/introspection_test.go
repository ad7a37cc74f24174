package config

import (
	"testing"
	"time"
)

// TestIntrospectionProvider decodes the opaque-token providers of testdata/good/introspection.yaml
// and their defaults.
func TestIntrospectionProvider(t *testing.T) {
	cfg, err := Load("testdata/good/introspection.yaml", testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Provider("curity").Introspection
	if c == nil || c.URL != "https://idp.example.com/oauth/introspect" || c.ClientID != "gateway" ||
		c.ClientSecret.Value() == "" || c.CacheTTL.Std() != time.Minute || c.NegativeTTL.Std() != 10*time.Second {
		t.Fatalf("curity: %+v", c)
	}
	if cfg.Provider("curity").Issuer != "https://idp.example.com" {
		t.Fatal("issuer")
	}
	b := cfg.Provider("bare")
	if b.Introspection.CacheTTL.Std() != 60*time.Second || b.Introspection.NegativeTTL.Std() != 10*time.Second ||
		b.Issuer != "" || len(b.Audiences) != 0 || b.Introspection.ClientSecret.Value() == "" {
		t.Fatalf("bare: %+v %+v", b, b.Introspection)
	}
	if cfg.Provider("corp").Introspection != nil {
		t.Fatal("corp has introspection")
	}
}
