package testenv

import (
	"fmt"
	"strings"
)

// DemoInstructions are the commands `tokengate demo` prints. Each works as printed against the
// running stack (the demo test runs them).
func DemoInstructions(s *Stack) string {
	gw, api := s.Gateway.URL(), "http://"+s.App.HTTPAddr()
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("tokengate demo is running:")
	p("  ext_authz gRPC   %s   (grpcurl -plaintext %s list)", s.App.GRPCAddr(), s.App.GRPCAddr())
	p("  HTTP endpoints   %s   (token, JWKS, introspection, metadata, /metrics, /readyz)", api)
	p("  forward-auth     %s   (its own listener, server.authz_addr: only gateways should reach it)", s.AuthzURL())
	p("  gateway          %s   (calls Check the way Envoy does, then forwards to the echo upstream)", gw)
	p("  external IdP     %s   (a fake Auth0/Keycloak/Curity: JWKS, token and introspection endpoints)", s.IdP.URL())
	p("  echo upstream    %s   (answers with the headers it received)", s.Echo.URL())
	p("")
	p("1. Get a token from tokengate's own token endpoint (client credentials, RFC 6749 §4.4):")
	p("   TOKEN=$(curl -s -u %s:%s -d grant_type=client_credentials -d 'scope=echo.read admin' %s/oauth2/token | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')", DemoClientID, DemoClientSecret, api)
	p("")
	p("2. mint: the upstream gets a token tokengate signs for it (see its authorization header):")
	p("   curl -s -H \"Authorization: Bearer $TOKEN\" %s/mint/hello", gw)
	p("")
	p("3. fetch: the upstream gets a token fetched from the external IdP with tokengate's own credentials:")
	p("   curl -s -H \"Authorization: Bearer $TOKEN\" %s/fetch/orders", gw)
	p("")
	p("4. exchange: the caller's own client credentials are exchanged at the IdP:")
	p("   curl -s -u %s:%s %s/exchange/orders", PartnerClientID, PartnerSecret, gw)
	p("")
	p("5. passthrough, remove and a public route:")
	p("   curl -s -H \"Authorization: Bearer $TOKEN\" %s/passthrough/x", gw)
	p("   curl -s -H \"Authorization: Bearer $TOKEN\" %s/remove/x", gw)
	p("   curl -s %s/public/x", gw)
	p("")
	p("6. denials (RFC 6750): no token, a bad token, a missing scope:")
	p("   curl -si %s/mint/hello", gw)
	p("   curl -si -H 'Authorization: Bearer not.a.token' %s/mint/hello", gw)
	p("   curl -si -H \"Authorization: Bearer $(curl -s -u %s:%s -d grant_type=client_credentials %s/oauth2/token | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')\" %s/admin/x", DemoClientID, DemoClientSecret, api, gw)
	p("")
	p("7. phantom token: an opaque token of the external IdP (valid one hour), judged by its introspection")
	p("   endpoint (RFC 7662); the upstream gets a JWT tokengate signs (see its authorization header):")
	p("   curl -s -H 'Authorization: Bearer %s' %s/opaque/hello", s.OpaqueToken, gw)
	p("")
	p("8. the same decision over HTTP forward-auth (nginx auth_request, Traefik, Caddy):")
	p("   curl -si -H \"Authorization: Bearer $TOKEN\" -H 'X-Forwarded-Uri: /mint/hello' -H 'X-Forwarded-Method: GET' %s", s.AuthzURL())
	p("")
	p("9. token_exchange (RFC 8693): a user's token of the external IdP (valid one hour) is exchanged at")
	p("   the IdP for a token meant for the upstream that still names the user (see its authorization header):")
	p("   curl -s -H 'Authorization: Bearer %s' %s/delegate/hello", s.UserToken, gw)
	p("")
	p("10. tokengate's own token endpoint as a token-exchange server (RFC 8693): the service %s exchanges", ServiceClientID)
	p("    the caller's $TOKEN for a token meant for %s; the answer, then that token introspected, with act naming the service:", ServiceAudience)
	exch := fmt.Sprintf("curl -s -u %s:%s -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange -d subject_token=$TOKEN -d subject_token_type=urn:ietf:params:oauth:token-type:access_token -d audience=%s -d scope=echo.read %s/oauth2/token",
		ServiceClientID, ServiceSecret, ServiceAudience, api)
	p("    %s", exch)
	p("    curl -s -u %s:%s -d token=$(%s | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/') %s/oauth2/introspect", ServiceClientID, ServiceSecret, exch, api)
	p("")
	p("Press Ctrl-C to stop.")
	return b.String()
}
