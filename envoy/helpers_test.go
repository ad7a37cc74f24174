package envoy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/tokengate/tokengate/extauthz"
	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/introspect"
)

// readFile returns a file of this directory.
func readFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return data
}

// yamlDoc decodes one YAML document into JSON-shaped Go values (map[string]any, []any, ...), as
// sigs.k8s.io/yaml does, merge keys (<<) included.
func yamlDoc(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	return m
}

// yamlDocs splits a multi-document YAML file and decodes each non-empty document.
func yamlDocs(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, part := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(data), -1) {
		if strings.TrimSpace(stripComments(part)) == "" {
			continue
		}
		out = append(out, yamlDoc(t, []byte(part)))
	}
	return out
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// dig walks a JSON-shaped value along map keys (string) and list indices (int). It fails the test
// when the path does not exist, so a broken-copy case can never silently mutate nothing.
func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for i, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("dig %v: element %d is %T, not a map", path, i, v)
			}
			if v, ok = m[k]; !ok {
				t.Fatalf("dig %v: no key %q", path, k)
			}
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("dig %v: element %d is not a list with index %d", path, i, k)
			}
			v = l[k]
		default:
			t.Fatalf("dig: bad path element %T", p)
		}
	}
	return v
}

func digMap(t *testing.T, v any, path ...any) map[string]any {
	t.Helper()
	m, ok := dig(t, v, path...).(map[string]any)
	if !ok {
		t.Fatalf("dig %v: not a map", path)
	}
	return m
}

func digList(t *testing.T, v any, path ...any) []any {
	t.Helper()
	l, ok := dig(t, v, path...).([]any)
	if !ok {
		t.Fatalf("dig %v: not a list", path)
	}
	return l
}

// str returns v as a string, or "".
func str(v any) string {
	s, _ := v.(string)
	return s
}

// deepCopy copies a JSON-shaped value, so a broken copy never alters the good document.
func deepCopy(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func toJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// composeVar matches the ${NAME}, ${NAME:-default} and ${NAME:?message} references of compose
// files.
var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:([-?])([^}]*))?\}`)

// testComposeSecrets are the values the tests give the rig's required secrets (${NAME:?...}: the
// compose files have no defaults for them). 16 characters or more, as tokengate's validation
// wants of client secrets.
var testComposeSecrets = map[string]string{
	"DEMO_CLIENT_SECRET":    "test-demo-client-secret-0123",
	"CORP_APP_SECRET":       "test-corp-app-secret-0123456",
	"GATEWAY_CLIENT_SECRET": "test-gateway-secret-01234567",
	"LEGACY_APP_SECRET":     "test-legacy-app-secret-01234",
}

// composeEnv returns the environment docker compose gives service of the compose file: each
// ${NAME:-default} at its default (what a user who sets nothing gets), each required
// ${NAME:?message} from testComposeSecrets. `extends` is followed.
func composeEnv(t *testing.T, file, service string) map[string]string {
	t.Helper()
	svc := composeService(t, file, service)
	env := map[string]string{}
	raw, _ := svc["environment"].(map[string]any)
	for k, v := range raw {
		s := fmt.Sprint(v)
		var bad string
		s = composeVar.ReplaceAllStringFunc(s, func(m string) string {
			sub := composeVar.FindStringSubmatch(m)
			switch sub[3] {
			case "-":
				return sub[4]
			case "?":
				v, ok := testComposeSecrets[sub[1]]
				if !ok {
					bad = sub[1]
				}
				return v
			}
			bad = sub[1]
			return ""
		})
		if bad != "" {
			t.Errorf("%s: service %s: environment %s uses ${%s} with neither a default nor a required-variable message (or a required variable the tests do not set): `docker compose up` with nothing set would pass an empty value", file, service, k, bad)
		}
		env[k] = s
	}
	return env
}

// composeService returns one service of a compose file, following `extends` (the base's keys
// under the extending service's own).
func composeService(t *testing.T, file, name string) map[string]any {
	t.Helper()
	doc := yamlDoc(t, readFile(t, file))
	services, _ := doc["services"].(map[string]any)
	svc, ok := services[name].(map[string]any)
	if !ok {
		t.Fatalf("%s: no service %q", file, name)
	}
	if ext, ok := svc["extends"].(map[string]any); ok {
		base := composeService(t, str(ext["file"]), str(ext["service"]))
		merged := deepCopy(t, base)
		for k, v := range svc {
			if k != "extends" {
				merged[k] = v
			}
		}
		return merged
	}
	return svc
}

// envLookup turns a map into the env function config.Load takes; a name it lacks is reported
// missing, so config.Load names it.
func envLookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

// loadConfig runs tokengate's own configuration loading and validation (what `tokengate
// validate` does) on data, after replacing each key of rewrite by its value (absolute paths of a
// container, such as /etc/tokengate/keys/, moved to a test directory).
func loadConfig(t *testing.T, data []byte, rewrite map[string]string, env map[string]string) (*config.Config, error) {
	t.Helper()
	s := string(data)
	for from, to := range rewrite {
		s = strings.ReplaceAll(s, from, to)
	}
	path := filepath.Join(t.TempDir(), "tokengate.yaml")
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Load(path, envLookup(env))
}

// selectRoute is the route tokengate selects for a request when the gateway names none: the
// real selection (docs/decisions.md#route-selection), not a copy of it. An Authorizer is built
// from cfg's route matches, mapped as internal/app maps them, with no authentication and no
// upstream token, and asked to decide the request: the route of an allowed decision is the one
// selected; a denial means no route matches (or the path is not in normal form).
func selectRoute(cfg *config.Config, authority, path, method string) *config.Route {
	routes := make([]extauthz.Route, len(cfg.Routes))
	for i, r := range cfg.Routes {
		routes[i] = extauthz.Route{Name: r.Name, Authority: r.Match.Authority, PathPrefix: r.Match.PathPrefix,
			Methods: r.Match.Methods, IgnoreCase: r.Match.IgnoreCase, Auth: extauthz.AuthNone, Upstream: extauthz.UpstreamRemove}
	}
	a, err := extauthz.New(routes, extauthz.Deps{})
	if err != nil {
		// Only a wiring mistake fails here (config.Load already refused invalid routes).
		panic(fmt.Sprintf("extauthz.New on the routes of a loaded configuration: %v", err))
	}
	d := a.Decide(context.Background(), extauthz.Request{Authority: authority, Path: path, Method: method})
	if !d.Allowed {
		return nil
	}
	return cfg.Route(d.Route)
}

// forwardClaimHeaders returns every header name any route of cfg forwards a claim in, sorted.
func forwardClaimHeaders(cfg *config.Config) []string {
	var hs []string
	for _, r := range cfg.Routes {
		for h := range r.ForwardClaims {
			if !slices.Contains(hs, strings.ToLower(h)) {
				hs = append(hs, strings.ToLower(h))
			}
		}
	}
	slices.Sort(hs)
	return hs
}

// longestRouteTimeout is the longest time a Check may wait on one route of cfg for an IdP: the
// fetch, token_exchange and client_credentials timeouts (defaults applied by config.Load), and
// an introspection call (introspect.DefaultTimeout) on a route with an introspection provider.
// (A whole decision is bounded by the authorizer's DecisionTimeout, 5 s by default, so two
// waits of one route never add up past it.)
func longestRouteTimeout(cfg *config.Config) time.Duration {
	var d time.Duration
	for _, r := range cfg.Routes {
		if f := r.Upstream.Fetch; f != nil {
			d = max(d, f.Timeout.Std())
		}
		if te := r.Upstream.TokenExchange; te != nil {
			d = max(d, te.Timeout.Std())
		}
		if cc := r.Authenticate.ClientCredentials; cc != nil {
			d = max(d, cc.Timeout.Std())
		}
		if j := r.Authenticate.JWT; j != nil {
			for _, name := range j.Providers {
				if p := cfg.Provider(name); p != nil && p.Introspection != nil {
					d = max(d, introspect.DefaultTimeout)
				}
			}
		}
	}
	return d
}

// containsFold reports whether list holds s, ignoring case (header names).
func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(v string) bool { return strings.EqualFold(v, s) })
}

// wantError fails unless one of errs contains want.
func wantError(t *testing.T, errs []error, want string) {
	t.Helper()
	for _, e := range errs {
		if e != nil && strings.Contains(e.Error(), want) {
			return
		}
	}
	t.Errorf("no error contains %q; got %d error(s):", want, len(errs))
	for _, e := range errs {
		t.Errorf("  %v", e)
	}
}

// noErrors fails with every error of errs.
func noErrors(t *testing.T, errs []error) {
	t.Helper()
	for _, e := range errs {
		t.Error(e)
	}
}
