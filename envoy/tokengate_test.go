package envoy

import (
	"crypto/sha256"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/testkit"
)

// The rig's identities, as README.md's curl commands use them.
const (
	idpCallerClient   = "corp-app"   // gets JWTs for the gateway from the IdP
	idpGatewayClient  = "gateway"    // tokengate's own credentials at the IdP (fetch)
	idpExchangeClient = "legacy-app" // the caller of the exchanged route
)

// modeRoutes maps each tokengate route of the rig to its upstream mode (and, for "none", to its
// authenticate mode): one route per mode, as envoy.yaml names them.
var modeRoutes = map[string]string{
	"mint":        config.UpstreamMint,
	"fetch":       config.UpstreamFetch,
	"exchanged":   config.UpstreamExchanged,
	"passthrough": config.UpstreamPassthrough,
	"remove":      config.UpstreamRemove,
	"none":        config.UpstreamRemove,
}

// TestTokengateConfigs runs tokengate's own validation (config.Load, what `tokengate validate`
// runs) on every shipped tokengate configuration, with the environment its compose service gets,
// and checks that the rig's pieces fit: the gateway's providers and routes point at the IdP's
// issuer, token endpoint and clients, with secrets that match under the compose defaults.
func TestTokengateConfigs(t *testing.T) {
	tg := shippedTokengate(t)
	idp, err := loadConfig(t, readFile(t, "idp.yaml"), nil, composeEnv(t, "docker-compose.yaml", "idp"))
	if err != nil {
		t.Fatalf("idp.yaml does not pass tokengate's validation:\n%v", err)
	}

	t.Run("one route per mode", func(t *testing.T) {
		if len(tg.Routes) != len(modeRoutes) {
			t.Errorf("tokengate.yaml has %d routes, want %d (one per mode)", len(tg.Routes), len(modeRoutes))
		}
		for name, mode := range modeRoutes {
			r := tg.Route(name)
			if r == nil {
				t.Errorf("no route %q", name)
				continue
			}
			if got := r.Upstream.Mode(); got != mode {
				t.Errorf("route %s: upstream %s, want %s", name, got, mode)
			}
		}
		if m := tg.Route("none").Authenticate.Mode(); m != config.AuthNone {
			t.Errorf("route none authenticates with %q", m)
		}
		if m := tg.Route("exchanged").Authenticate.Mode(); m != config.AuthClientCredentials {
			t.Errorf("route exchanged authenticates with %q", m)
		}
	})

	t.Run("gateway trusts the IdP", func(t *testing.T) {
		corp := tg.Provider("corp")
		if corp == nil || corp.IsSelf() {
			t.Fatal("tokengate.yaml has no external provider corp")
		}
		if corp.Issuer != idp.Issuer.IssuerURL {
			t.Errorf("provider corp issuer %q, but the IdP signs iss %q", corp.Issuer, idp.Issuer.IssuerURL)
		}
		if want := strings.TrimSuffix(idp.Issuer.IssuerURL, "/") + "/.well-known/jwks.json"; corp.JWKSURI != want {
			t.Errorf("provider corp jwks_uri %q, the IdP publishes %q", corp.JWKSURI, want)
		}
		for _, k := range idp.Issuer.SigningKeys {
			if !slices.Contains(corp.Algorithms, k.Alg) {
				t.Errorf("the IdP signs with %s, which provider corp does not allow %v", k.Alg, corp.Algorithms)
			}
		}
		if tg.Provider("self") == nil || !tg.Provider("self").IsSelf() {
			t.Error("tokengate.yaml has no `issuer: self` provider")
		}
	})

	t.Run("callers can get the tokens the jwt routes want", func(t *testing.T) {
		corpApp := client(t, idp, idpCallerClient)
		corp := tg.Provider("corp")
		if !slices.ContainsFunc(corpApp.Audiences, func(a string) bool { return slices.Contains(corp.Audiences, a) }) {
			t.Errorf("IdP client %s gets audiences %v, none accepted by provider corp %v", idpCallerClient, corpApp.Audiences, corp.Audiences)
		}
		for _, r := range tg.Routes {
			if r.Authenticate.JWT == nil {
				continue
			}
			for _, p := range r.Authenticate.JWT.Providers {
				var clients []config.Client
				if tg.Provider(p).IsSelf() {
					clients = tg.Issuer.Clients
				} else {
					clients = []config.Client{corpApp}
				}
				if !slices.ContainsFunc(clients, func(c config.Client) bool { return subset(r.Authenticate.JWT.Scopes, c.DefaultScopes) }) {
					t.Errorf("route %s: no client of provider %s gets scopes %v by default", r.Name, p, r.Authenticate.JWT.Scopes)
				}
			}
		}
	})

	t.Run("fetch uses the gateway's own client at the IdP", func(t *testing.T) {
		f := tg.Route("fetch").Upstream.Fetch
		if want := strings.TrimSuffix(idp.Issuer.IssuerURL, "/") + "/oauth2/token"; f.TokenURL != want {
			t.Errorf("fetch token_url %q, the IdP's token endpoint is %q", f.TokenURL, want)
		}
		c := client(t, idp, f.ClientID)
		if f.ClientID != idpGatewayClient {
			t.Errorf("fetch uses client %q, want %q", f.ClientID, idpGatewayClient)
		}
		if !slices.Contains(c.SecretHashes, sha256.Sum256([]byte(f.ClientSecret.Value()))) {
			t.Errorf("fetch client_secret does not match the IdP's %s secret under the compose defaults", f.ClientID)
		}
		if !subset(f.Scopes, c.Scopes) {
			t.Errorf("fetch asks scopes %v, client %s may have %v", f.Scopes, f.ClientID, c.Scopes)
		}
		if f.Audience != "" && !slices.Contains(c.Audiences, f.Audience) {
			t.Errorf("fetch asks audience %q, client %s may have %v", f.Audience, f.ClientID, c.Audiences)
		}
	})

	t.Run("exchanged asks the IdP for what the legacy client may get", func(t *testing.T) {
		cc := tg.Route("exchanged").Authenticate.ClientCredentials
		if want := strings.TrimSuffix(idp.Issuer.IssuerURL, "/") + "/oauth2/token"; cc.TokenURL != want {
			t.Errorf("exchanged token_url %q, the IdP's token endpoint is %q", cc.TokenURL, want)
		}
		c := client(t, idp, idpExchangeClient)
		if !subset(cc.Scopes, c.Scopes) {
			t.Errorf("exchanged asks scopes %v, client %s may have %v", cc.Scopes, idpExchangeClient, c.Scopes)
		}
	})

	t.Run("replicas differ only in key and cache", func(t *testing.T) {
		dir := t.TempDir()
		keyFile := tgReplicasKeyFile(t)
		testkit.WriteP256Key(t, filepath.Join(dir, filepath.Base(keyFile)))
		rep, err := loadConfig(t, readFile(t, "tokengate-replicas.yaml"),
			map[string]string{filepath.Dir(keyFile) + "/": dir + "/"},
			composeEnv(t, "docker-compose.replicas.yaml", "tokengate-a"))
		if err != nil {
			t.Fatalf("tokengate-replicas.yaml does not pass tokengate's validation:\n%v", err)
		}
		if !reflect.DeepEqual(rep.Routes, tg.Routes) {
			t.Error("tokengate-replicas.yaml's routes differ from tokengate.yaml's")
		}
		if !reflect.DeepEqual(rep.Providers, tg.Providers) {
			t.Error("tokengate-replicas.yaml's providers differ from tokengate.yaml's")
		}
		if rep.Cache.Redis == nil || rep.Cache.Redis.Addr == "" {
			t.Fatal("tokengate-replicas.yaml shares no cache through Redis")
		}
		if host, _, _ := strings.Cut(rep.Cache.Redis.Addr, ":"); len(composeServices(t, "docker-compose.replicas.yaml", host)) == 0 {
			t.Errorf("cache.redis.addr %q names no service of docker-compose.replicas.yaml", rep.Cache.Redis.Addr)
		}
		if len(rep.Issuer.SigningKeys) == 0 || rep.Issuer.SigningKeys[0].Generate {
			t.Error("replicas must share a signing key file, not generate one each")
		}
	})

	t.Run("a broken copy is refused", func(t *testing.T) {
		// The harness must not pass everything: a route naming an unknown provider.
		data := strings.Replace(string(readFile(t, "tokengate.yaml")), "providers: [corp, self]", "providers: [corp, nobody]", 1)
		_, err := loadConfig(t, []byte(data), nil, composeEnv(t, "docker-compose.yaml", "tokengate"))
		if err == nil || !strings.Contains(err.Error(), "nobody") {
			t.Errorf("a route naming provider nobody loaded: %v", err)
		}
		// And a secret the environment does not set.
		_, err = loadConfig(t, readFile(t, "tokengate.yaml"), nil, map[string]string{})
		if err == nil || !strings.Contains(err.Error(), "GATEWAY_CLIENT_SECRET") {
			t.Errorf("tokengate.yaml loaded without GATEWAY_CLIENT_SECRET set: %v", err)
		}
	})
}

// tgReplicasKeyFile returns the signing key file tokengate-replicas.yaml reads, checking that the
// compose keygen service writes exactly that file.
func tgReplicasKeyFile(t *testing.T) string {
	t.Helper()
	doc := yamlDoc(t, readFile(t, "tokengate-replicas.yaml"))
	keys := digList(t, doc, "issuer", "signing_keys")
	file := str(digMap(t, keys[0])["file"])
	if file == "" {
		t.Fatal("tokengate-replicas.yaml: the first signing key has no file")
	}
	cmd := composeService(t, "docker-compose.replicas.yaml", "keygen")["command"]
	args, _ := cmd.([]any)
	out := ""
	for i, a := range args {
		if a == "--out" && i+1 < len(args) {
			out = str(args[i+1])
		}
	}
	if out != file {
		t.Errorf("keygen writes %q but tokengate-replicas.yaml reads %q", out, file)
	}
	return file
}

// client returns the client id of cfg's issuer.
func client(t *testing.T, cfg *config.Config, id string) config.Client {
	t.Helper()
	for _, c := range cfg.Issuer.Clients {
		if c.ClientID == id {
			return c
		}
	}
	t.Fatalf("no client %q", id)
	return config.Client{}
}

func subset(sub, of []string) bool {
	for _, s := range sub {
		if !slices.Contains(of, s) {
			return false
		}
	}
	return true
}
