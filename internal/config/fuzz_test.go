package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that a nil error always comes with a usable
// *Config, and that every error is a non-empty *Errors without an internal failure.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"routes: [{name: r, authenticate: {none: }, upstream: {remove: }}]",
		"a: &a [*a]",
		"<<: {routes: []}",
		"routes: [{<<: &r {name: r}, authenticate: {none: {}}, upstream: {<<: [*r]}}]",
		"cache: {redis: {addr: \"${A}\", db: \"${A}\"}}",
		"issuer: {clients: [{claims: {a: [1, 1e400, 0x10, .nan, !!binary aGk=, {b: ~}]}}]}",
		"server: !!map {}",
		"? [a]\n: b",
		"--- |\n  text",
		"\xff\xfe",
		// Secrets given twice, by alias, or null; typed values from the environment.
		"routes: [{name: r, authenticate: {none: }, upstream: {fetch: {token_url: \"https://i.example/t\", client_id: a, client_secret: x, client_secret_file: y}}}]",
		"issuer: {issuer_url: \"https://i.example\", clients: [{client_id: c, client_secret: &s x, client_secret_file: *s, audiences: [a]}, ~]}",
		"server: {allow_http_urls: \"${A}\", max_token_bytes: \"${A}\"}\ncache: {redis: {addr: \"r:1\", password: ~, password_file: \"\"}}",
		// Defaults against explicit nulls and zeros, merged inline fields, repeated keys.
		"providers: [{name: a, algorithms: ~, clock_skew: 0s}, {name: b, algorithms: []}]",
		"routes: [{name: r, authenticate: {client_credentials: {<<: {timeout: 1s}, token_url: \"https://i.example/t\", auth_style: body}}, upstream: {exchanged: }}]",
		"server: {grpc_addr: \":1\", grpc_addr: \":2\"}\nroutes: [{name: r, name: s}]",
		"routes: [{name: r, authenticate: {none: {}}, upstream: {mint: {ttl: 90, scopes: !!str 5}}, forward_claims: {x-a: [b]}}]",
	} {
		f.Add([]byte(s))
	}
	env := testEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "testdata/good", env)
		if err == nil {
			if cfg == nil {
				t.Fatal("nil error and nil config")
			}
			for i := range cfg.Routes {
				r := &cfg.Routes[i]
				if r.Authenticate.Mode() == "" || r.Upstream.Mode() == "" {
					t.Fatalf("valid config with route %d lacking a mode", i)
				}
				if f := r.Upstream.Fetch; f != nil && f.ClientSecret.Value() == "" {
					t.Fatalf("valid config with route %d fetching without a secret", i)
				}
			}
			if _, err := json.Marshal(cfg); err != nil {
				t.Fatalf("valid config does not marshal: %v", err)
			}
			return
		}
		if cfg != nil {
			t.Fatal("config returned with an error")
		}
		var e *Errors
		if !errors.As(err, &e) || len(e.Problems) == 0 {
			t.Fatalf("error %v is not a non-empty *Errors", err)
		}
		for _, p := range e.Problems {
			if p.Message == "" || strings.Contains(p.Message, "internal error") {
				t.Fatalf("bad problem %+v", p)
			}
		}
	})
}
