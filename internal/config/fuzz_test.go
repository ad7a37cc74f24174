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
