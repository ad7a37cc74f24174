package envoy

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"
)

// forwardAuthGateways are the compose services that ask a tokengate's /authz over HTTP, each
// sending the caller's address in X-Forwarded-For (envoy.yaml's gRPC Check sends it in
// attributes.source.address instead).
var forwardAuthGateways = []string{"nginx", "caddy", "traefik", "envoy-http"}

// TestForwardAuthTrustedProxies: behind a forward-auth gateway every request reaches tokengate
// from the gateway's address, so without server.trusted_proxies the failure limiter
// (docs/issuer.md#failure-limiter) counts every caller as one: fifty wrong secrets from one
// client lock every client out. The compose network pins the gateways' addresses in a block
// Docker never hands out, tokengate.yaml trusts exactly that block, and each gateway sets
// X-Forwarded-For to the address it saw itself, never passing a caller's own on; the bridge's
// gateway address (through which published ports are reached, including the token endpoint's)
// and every address Docker assigns are not trusted.
func TestForwardAuthTrustedProxies(t *testing.T) {
	const file = "docker-compose.yaml"
	doc := yamlDoc(t, readFile(t, file))
	ipam := digList(t, doc, "networks", "default", "ipam", "config")
	cfg := digMap(t, ipam[0])
	subnet, err := netip.ParsePrefix(str(cfg["subnet"]))
	if err != nil {
		t.Fatalf("%s: networks.default.ipam.config[0].subnet: %v", file, err)
	}
	dynamic, err := netip.ParsePrefix(str(cfg["ip_range"]))
	if err != nil {
		t.Fatalf("%s: networks.default.ipam.config[0].ip_range (the addresses Docker assigns): %v", file, err)
	}
	bridge := subnet.Masked().Addr().Next() // Docker's default gateway address of the subnet

	pinned := map[string]netip.Addr{}
	for name := range digMap(t, doc, "services") {
		nets, _ := composeService(t, file, name)["networks"].(map[string]any)
		def, _ := nets["default"].(map[string]any)
		if a := str(def["ipv4_address"]); a != "" {
			addr, err := netip.ParseAddr(a)
			if err != nil || !subnet.Contains(addr) || dynamic.Contains(addr) {
				t.Errorf("%s: service %s: ipv4_address %q must be in %s and outside ip_range %s", file, name, a, subnet, dynamic)
			}
			pinned[name] = addr
		}
	}

	for _, svc := range []string{"tokengate", "tokengate-nginx", "tokengate-fwd"} {
		trusted := composeTokengate(t, svc).Server.TrustedProxyPrefixes
		if len(trusted) == 0 {
			t.Errorf("tokengate.yaml (service %s) trusts no proxy: every forward-auth caller is its gateway's address to the failure limiter", svc)
		}
		in := func(a netip.Addr) bool {
			for _, p := range trusted {
				if p.Contains(a) {
					return true
				}
			}
			return false
		}
		for _, gw := range forwardAuthGateways {
			if a, ok := pinned[gw]; !ok || !in(a) {
				t.Errorf("service %s: gateway %s (address %v, pinned %v) is not in server.trusted_proxies %v", svc, gw, a, ok, trusted)
			}
		}
		for name, a := range pinned {
			if in(a) && !containsFold(forwardAuthGateways, name) {
				t.Errorf("service %s trusts %s (%s), which is no forward-auth gateway", svc, name, a)
			}
		}
		for _, p := range trusted {
			if p.Overlaps(dynamic) || p.Contains(bridge) || !subnet.Overlaps(p) {
				t.Errorf("service %s: trusted_proxies %s must lie in %s, outside the assigned range %s and the bridge address %s", svc, p, subnet, dynamic, bridge)
			}
		}
	}

	// nginx: X-Forwarded-For is $remote_addr, overwritten (TestNginxExample checks the /_authz
	// block in detail): never $proxy_add_x_forwarded_for, which appends to the caller's own.
	nginx := stripComments(string(readFile(t, "nginx/nginx.conf")))
	if strings.Contains(nginx, "$proxy_add_x_forwarded_for") || !strings.Contains(nginx, "proxy_set_header X-Forwarded-For $remote_addr;") {
		t.Error("nginx.conf must set X-Forwarded-For to $remote_addr")
	}
	// Caddy sets X-Forwarded-For to the peer unless the peer is one of its own trusted_proxies.
	if strings.Contains(stripComments(string(readFile(t, "caddy/Caddyfile"))), "trusted_proxies") {
		t.Error("Caddyfile: trusted_proxies would pass a caller's own X-Forwarded-For on to tokengate")
	}
	// Traefik: the forwardAuth middleware and the entry point believe no caller's X-Forwarded-*.
	dyn := yamlDoc(t, readFile(t, "traefik/dynamic.yml"))
	if digMap(t, dyn, "http", "middlewares", "tokengate", "forwardAuth")["trustForwardHeader"] != false {
		t.Error("traefik: forwardAuth.trustForwardHeader must be false")
	}
	if fh := at(yamlDoc(t, readFile(t, "traefik/traefik.yml")), "entryPoints", "web", "forwardedHeaders"); fh != nil {
		t.Errorf("traefik.yml: entryPoints.web.forwardedHeaders %v would believe a caller's X-Forwarded-For", fh)
	}
	// Envoy's HTTP ext_authz: the connection manager appends the peer it saw to X-Forwarded-For
	// (use_remote_address, no trusted hops) and the header is sent to tokengate, whose right-most
	// untrusted entry is then that peer.
	b, err := parseBootstrap(readFile(t, "envoy-http.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	model := &envoyModel{}
	if errs := walk("bootstrap", b.ProtoReflect(), model); len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, h := range model.hcms {
		if !h.msg.GetUseRemoteAddress().GetValue() || h.msg.GetXffNumTrustedHops() != 0 {
			t.Errorf("envoy-http.yaml %s: use_remote_address must be true and xff_num_trusted_hops 0", h.path)
		}
	}
	for _, e := range model.extAuthz {
		//lint:ignore SA1019 the deprecated field is still honoured by Envoy, so it is checked too
		if !listMatches(e.msg.GetAllowedHeaders(), "x-forwarded-for") && !listMatches(e.msg.GetHttpService().GetAuthorizationRequest().GetAllowedHeaders(), "x-forwarded-for") {
			t.Errorf("envoy-http.yaml %s: allowed_headers must send x-forwarded-for to tokengate", e.path)
		}
	}
	if !regexp.MustCompile(`(?m)^\s*trusted_proxies:`).Match(readFile(t, "tokengate.yaml")) {
		t.Error("tokengate.yaml sets no server.trusted_proxies")
	}
}
