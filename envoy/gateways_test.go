package envoy

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/testkit"
)

// The forward-auth examples are checked here for structure and syntax; tokengate's end-to-end
// tests run nginx and Caddy on them (rendered with NginxConfig and Caddyfile) against a real
// tokengate. Traefik has no Debian package: its files are checked structurally only.

// nginxVar is the nginx variable auth_request_set gives tokengate's answer header h.
func nginxUpstreamVar(h string) string {
	return "$upstream_http_" + strings.ReplaceAll(strings.ToLower(h), "-", "_")
}

// TestNginxExample checks that nginx/nginx.conf asks /authz with the original request's method
// and URI (overriding any the caller sent), copies Authorization and every forward_claims header
// from tokengate's answer onto the upstream request, and passes denials on.
func TestNginxExample(t *testing.T) {
	conf := string(readFile(t, "nginx/nginx.conf"))
	norm := regexp.MustCompile(`\s+`).ReplaceAllString(stripComments(conf), " ")
	tg := shippedTokengate(t)

	authz := regexp.MustCompile(`location = /_authz \{([^}]*)\}`).FindStringSubmatch(norm)
	if authz == nil {
		t.Fatal("no `location = /_authz` block")
	}
	for _, want := range []string{"internal;", "proxy_pass http://" + shippedNginxTokengate + "/authz;", "proxy_pass_request_body off;"} {
		if !strings.Contains(authz[1], want) {
			t.Errorf("location /_authz lacks %q", want)
		}
	}
	// Every header tokengate reads the original request from (forward_auth_headers x-original:
	// X-Original-URI, X-Original-Method and Host) is set from nginx's own variables; the other
	// family is dropped (an empty value), never passed on from the caller; the caller's address,
	// scheme and certificate are nginx's (issue 9 items 4, 13).
	for h, v := range map[string]string{
		"Host": "$host", "X-Original-URI": "$request_uri", "X-Original-Method": "$request_method",
		"X-Forwarded-Uri": `""`, "X-Forwarded-Method": `""`, "X-Forwarded-Host": `""`,
		"X-Forwarded-For": "$remote_addr", "X-Forwarded-Proto": "$scheme", "X-Client-Cert": "$ssl_client_escaped_cert",
	} {
		if !strings.Contains(authz[1], "proxy_set_header "+h+" "+v+";") {
			t.Errorf("location /_authz does not set %s to %s", h, v)
		}
	}
	if tgn := nginxTokengate(t); tgn.Server.ForwardAuthHeaders != config.ForwardAuthXOriginal {
		t.Errorf("nginx's tokengate reads forward_auth_headers %q, want x-original", tgn.Server.ForwardAuthHeaders)
	}
	// Upstream: X-Forwarded-For overwritten with the client's address, not appended to.
	if !strings.Contains(norm, "proxy_set_header X-Forwarded-For $remote_addr;") || strings.Contains(norm, "$proxy_add_x_forwarded_for") {
		t.Error("nginx must overwrite X-Forwarded-For with $remote_addr, not append to the caller's")
	}
	// Unsafe paths (";", "\\", encoded slashes and dots, dot segments) are refused with 400.
	unsafe := regexp.MustCompile(`if \(\$request_uri ~\*? "([^"]+)"\) \{ return 400`).FindStringSubmatch(norm)
	if unsafe == nil {
		t.Error("no `if ($request_uri ~* ...) { return 400` refusing unsafe paths")
	} else {
		re := regexp.MustCompile("(?i)" + strings.ReplaceAll(unsafe[1], `\\\\`, `\\`))
		for _, p := range []string{"/admin;/x", "/x/..;/admin/x", "/a%3Bb", `/a\b`, "/a%5cb", "/a%2Fb", "/%2e%2e/x", "/none/../mint/", "/a//b"} {
			if !re.MatchString(p) {
				t.Errorf("the unsafe-path regex lets %q through", p)
			}
		}
		for _, p := range []string{"/mint/x", "/none/a.b?x=;"} {
			if re.MatchString(p) {
				t.Errorf("the unsafe-path regex refuses the ordinary %q", p)
			}
		}
	}
	// tokengate's 429 reaches the client as 429 with its Retry-After.
	if !strings.Contains(norm, "auth_request_set $authz_retry_after $upstream_http_retry_after;") ||
		!regexp.MustCompile(`if \(\$authz_status = 429\) \{ return 429 `).MatchString(norm) ||
		!strings.Contains(norm, "add_header Retry-After $authz_retry_after always;") {
		t.Error("a 429 of tokengate must reach the client as 429 with Retry-After")
	}
	if !strings.Contains(norm, "auth_request /_authz;") {
		t.Error("no `auth_request /_authz;`")
	}
	for _, h := range append([]string{"Authorization"}, forwardClaimHeaders(tg)...) {
		m := regexp.MustCompile(`auth_request_set (\$\w+) ` + regexp.QuoteMeta(nginxUpstreamVar(h)) + `;`).FindStringSubmatch(norm)
		if m == nil {
			t.Errorf("tokengate's %s answer header is not captured with auth_request_set", h)
			continue
		}
		if !regexp.MustCompile(`(?i)proxy_set_header ` + regexp.QuoteMeta(h) + ` ` + regexp.QuoteMeta(m[1]) + `;`).MatchString(norm) {
			t.Errorf("%s is not set upstream from %s", h, m[1])
		}
	}
	for _, code := range []string{"401", "403", "500"} {
		if !regexp.MustCompile(`error_page ` + code + ` = @\w+;`).MatchString(norm) {
			t.Errorf("no error_page for %s (auth_request turns tokengate's 400 and 503 into 500)", code)
		}
	}

	t.Run("rendered", func(t *testing.T) {
		dir := t.TempDir()
		a := Addrs{Listen: "127.0.0.1:18080", Tokengate: "127.0.0.1:18081", Upstream: "127.0.0.1:18082"}
		got, err := NginxConfig(a, dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"listen 127.0.0.1:18080;", "proxy_pass http://127.0.0.1:18081/authz;", "proxy_pass http://127.0.0.1:18082;", "pid " + dir + "/nginx.pid;", "master_process off;"} {
			if !strings.Contains(got, want) {
				t.Errorf("rendered nginx.conf lacks %q", want)
			}
		}
		for _, old := range []string{shippedNginxTokengate, shippedUpstream, "listen 10000", "ssl_certificate", "ssl_verify", " ssl;", "/etc/nginx/tls"} {
			if strings.Contains(stripComments(got), old) {
				t.Errorf("rendered nginx.conf still holds %q", old)
			}
		}
		file := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(file, []byte(got), 0o600); err != nil {
			t.Fatal(err)
		}
		nginx := testkit.Tool(t, "nginx", "nginx")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, nginx, "-t", "-p", dir, "-c", file, "-e", filepath.Join(dir, "error.log")).CombinedOutput()
		if err != nil {
			t.Errorf("nginx -t refuses the rendered nginx.conf: %v\n%s", err, out)
		}
	})

	t.Run("bad addresses", func(t *testing.T) {
		for _, a := range []Addrs{
			{Listen: "127.0.0.1:1; include /etc/passwd", Tokengate: "127.0.0.1:2", Upstream: "127.0.0.1:3"},
			{Listen: "127.0.0.1:1", Tokengate: "127.0.0.1", Upstream: "127.0.0.1:3"},
			{Listen: "127.0.0.1:1", Tokengate: "127.0.0.1:2", Upstream: ":3"},
			{Listen: "127.0.0.1:1", Tokengate: "127.0.0.1:2", Upstream: "127.0.0.1:3", TLS: &NginxTLS{Listen: "127.0.0.1:4; ssl_verify_client off", Cert: "/c", Key: "/k", ClientCA: "/ca"}},
			{Listen: "127.0.0.1:1", Tokengate: "127.0.0.1:2", Upstream: "127.0.0.1:3", TLS: &NginxTLS{Listen: "127.0.0.1:4", Cert: "c.pem", Key: "/k", ClientCA: "/ca"}},
			{Listen: "127.0.0.1:1", Tokengate: "127.0.0.1:2", Upstream: "127.0.0.1:3", TLS: &NginxTLS{Listen: "127.0.0.1:4", Cert: "/c", Key: "/k", ClientCA: "/ca;\nssl_verify_client off"}},
		} {
			if _, err := NginxConfig(a, t.TempDir()); err == nil {
				t.Errorf("NginxConfig(%+v) accepted a bad address", a)
			}
		}
		if _, err := NginxConfig(Addrs{Listen: "127.0.0.1:1", Tokengate: "127.0.0.1:2", Upstream: "127.0.0.1:3"}, "relative/dir"); err == nil {
			t.Error("NginxConfig accepted a relative directory")
		}
	})
}

// TestCaddyExample checks that caddy/Caddyfile asks /authz, copies Authorization and every
// forward_claims header, and never lets the caller's own identity headers through whatever the
// Caddy version does with a header tokengate does not answer.
func TestCaddyExample(t *testing.T) {
	conf := stripComments(string(readFile(t, "caddy/Caddyfile")))
	tg := shippedTokengate(t)
	fa := regexp.MustCompile(`forward_auth (\S+) \{([^}]*)\}`).FindStringSubmatch(conf)
	if fa == nil {
		t.Fatal("no forward_auth block")
	}
	if fa[1] != shippedCaddyTokengate {
		t.Errorf("forward_auth asks %s, want %s", fa[1], shippedCaddyTokengate)
	}
	if tgf := fwdTokengate(t); tgf.Server.ForwardAuthHeaders != config.ForwardAuthXForwarded {
		t.Errorf("Caddy's tokengate reads forward_auth_headers %q, want x-forwarded", tgf.Server.ForwardAuthHeaders)
	}
	// Unsafe paths are refused with 400 before forward_auth.
	m := regexp.MustCompile("@unnormalized expression `\\{http.request.uri\\}.matches\\(\"([^`]+)\"\\)`").FindStringSubmatch(conf)
	if m == nil {
		t.Error("no @unnormalized matcher")
	} else {
		// The CEL string literal's escapes (\\ is one backslash) undone, as CEL reads it.
		re := regexp.MustCompile(strings.ReplaceAll(m[1], `\\`, `\`))
		for _, p := range []string{"/admin;/x", "/x/..;/admin/x", "/a%3Bb", `/a\b`, "/a%5Cb", "/a%2fb", "/%2E%2E/x", "/none/../mint/", "/a//b"} {
			if !re.MatchString(p) {
				t.Errorf("@unnormalized lets %q through", p)
			}
		}
		for _, p := range []string{"/mint/x", "/none/a.b?x=;"} {
			if re.MatchString(p) {
				t.Errorf("@unnormalized refuses the ordinary %q", p)
			}
		}
	}
	if !regexp.MustCompile(`(?m)^\s*uri /authz$`).MatchString(fa[2]) {
		t.Error("forward_auth does not use uri /authz")
	}
	copied := regexp.MustCompile(`(?m)^\s*copy_headers (.+)$`).FindStringSubmatch(fa[2])
	if copied == nil {
		t.Fatal("forward_auth copies no headers")
	}
	copyList := strings.Fields(copied[1])
	for _, h := range append([]string{"Authorization"}, forwardClaimHeaders(tg)...) {
		if !containsFold(copyList, h) {
			t.Errorf("copy_headers lacks %s", h)
		}
	}
	route := conf[strings.Index(conf, "route {"):]
	at := strings.Index(route, "forward_auth")
	for _, h := range forwardClaimHeaders(tg) {
		if i := indexFold(route, "request_header -"+h+"\n"); i < 0 || i > at {
			t.Errorf("the caller's own %s is not deleted before forward_auth", h)
		}
	}
	for _, h := range append([]string{"Authorization"}, forwardClaimHeaders(tg)...) {
		if i := regexp.MustCompile(`(?i)request_header @\w+ -` + regexp.QuoteMeta(h) + `\n`).FindStringIndex(route); i == nil || i[0] < at {
			t.Errorf("%s is not deleted after forward_auth when tokengate answered it empty or not at all", h)
		}
	}

	t.Run("rendered", func(t *testing.T) {
		a := Addrs{Listen: "127.0.0.1:18080", Tokengate: "127.0.0.1:18081", Upstream: "127.0.0.1:18082"}
		got, err := Caddyfile(a)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{":18080 {\n\tbind 127.0.0.1", "forward_auth 127.0.0.1:18081 {", "reverse_proxy 127.0.0.1:18082\n"} {
			if !strings.Contains(got, want) {
				t.Errorf("rendered Caddyfile lacks %q", want)
			}
		}
		for _, old := range []string{shippedCaddyTokengate, shippedUpstream, ":10000"} {
			if strings.Contains(stripComments(got), old) {
				t.Errorf("rendered Caddyfile still holds %q", old)
			}
		}
		dir := t.TempDir()
		file := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(file, []byte(got), 0o600); err != nil {
			t.Fatal(err)
		}
		caddy := testkit.Tool(t, "caddy", "caddy")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, caddy, "validate", "--config", file, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("caddy validate refuses the rendered Caddyfile: %v\n%s", err, out)
		}
	})
}

func indexFold(s, sub string) int { return strings.Index(strings.ToLower(s), strings.ToLower(sub)) }

// TestTraefikExample checks traefik/: forwardAuth to /authz with trustForwardHeader off,
// Authorization and every forward_claims header copied, the middleware on the catch-all router
// and only the health check without it.
func TestTraefikExample(t *testing.T) {
	tg := shippedTokengate(t)
	static := yamlDoc(t, readFile(t, "traefik/traefik.yml"))
	if got := str(dig(t, static, "entryPoints", "web", "address")); got != ":10000" {
		t.Errorf("entry point web listens on %q, want :10000", got)
	}
	if at(static, "ping", "manualRouting") != true {
		t.Error("traefik.yml: ping.manualRouting must be true (the health router answers with ping@internal, and only there)")
	}
	dyn := yamlDoc(t, readFile(t, "traefik/dynamic.yml"))
	fa := digMap(t, dyn, "http", "middlewares", "tokengate", "forwardAuth")
	if got := str(fa["address"]); got != "http://"+shippedCaddyTokengate+"/authz" {
		t.Errorf("forwardAuth address %q, want the x-forwarded tokengate's authz_addr", got)
	}
	// Only the credential headers go to tokengate, never every header of the caller's.
	var sent []string
	for _, h := range list(fa["authRequestHeaders"]) {
		sent = append(sent, str(h))
	}
	if !containsFold(sent, "Authorization") || !containsFold(sent, "DPoP") || containsFold(sent, "Cookie") {
		t.Errorf("authRequestHeaders %v: want the allow-list Authorization, DPoP", sent)
	}
	if fa["trustForwardHeader"] != false {
		t.Error("forwardAuth.trustForwardHeader must be false: a caller's X-Forwarded-Uri would choose tokengate's route")
	}
	var copied []string
	for _, h := range digList(t, fa, "authResponseHeaders") {
		copied = append(copied, str(h))
	}
	for _, h := range append([]string{"Authorization"}, forwardClaimHeaders(tg)...) {
		if !containsFold(copied, h) {
			t.Errorf("authResponseHeaders lacks %s", h)
		}
	}
	routers := digMap(t, dyn, "http", "routers")
	for name, r := range routers {
		rm, _ := r.(map[string]any)
		mws, _ := rm["middlewares"].([]any)
		protected := slices.Contains(mws, any("tokengate"))
		if !protected && str(rm["rule"]) != "Path(`"+healthPath+"`)" {
			t.Errorf("router %s (%s) skips tokengate", name, str(rm["rule"]))
		}
		// The unprotected health route is answered by Traefik itself, never proxied upstream
		// with the caller's headers.
		if !protected && str(rm["service"]) != "ping@internal" {
			t.Errorf("router %s proxies %s to %s without tokengate: answer it with ping@internal", name, str(rm["rule"]), str(rm["service"]))
		}
	}
}

// traefikDynamicFile is where traefik.yml reads its dynamic configuration.
func traefikDynamicFile(t *testing.T) string {
	t.Helper()
	return str(dig(t, yamlDoc(t, readFile(t, "traefik/traefik.yml")), "providers", "file", "filename"))
}

// traefikAddresses returns the hosts traefik/dynamic.yml connects to.
func traefikAddresses(t *testing.T) []string {
	t.Helper()
	dyn := yamlDoc(t, readFile(t, "traefik/dynamic.yml"))
	var hosts []string
	u, _ := url.Parse(str(dig(t, dyn, "http", "middlewares", "tokengate", "forwardAuth", "address")))
	hosts = append(hosts, u.Hostname())
	for _, s := range digMap(t, dyn, "http", "services") {
		sm, _ := s.(map[string]any)
		lb, _ := sm["loadBalancer"].(map[string]any)
		servers, _ := lb["servers"].([]any)
		for _, srv := range servers {
			m, _ := srv.(map[string]any)
			if u, err := url.Parse(str(m["url"])); err == nil {
				hosts = append(hosts, u.Hostname())
			}
		}
	}
	return hosts
}
