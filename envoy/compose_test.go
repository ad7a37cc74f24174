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

	"github.com/tokengate/tokengate/internal/testkit"
)

// composeFiles are the shipped compose files and the profiles that enable all their services.
var composeFiles = []struct {
	name     string
	profiles []string
}{
	{"docker-compose.yaml", []string{"http", "gateways"}},
	{"docker-compose.replicas.yaml", nil},
}

// TestComposeConfig runs `docker-compose config -q` (Debian's docker-compose package; no Docker
// engine needed) on every compose file with all its profiles: the Compose implementation's own
// schema and interpolation checks.
func TestComposeConfig(t *testing.T) {
	bin := testkit.Tool(t, "docker-compose", "docker-compose")
	for _, f := range composeFiles {
		t.Run(f.name, func(t *testing.T) {
			args := []string{"-f", f.name}
			for _, p := range f.profiles {
				args = append(args, "--profile", p)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, append(args, "config", "-q")...)
			// With the required secrets set, interpolation works: every other ${VAR} has a default.
			cmd.Env = cleanComposeEnv()
			for k, v := range testComposeSecrets {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("docker-compose %s config -q: %v\n%s", strings.Join(args, " "), err, out)
			}
			// Without them compose refuses to run, naming the variable, rather than start the
			// rig with a secret everyone knows (issue 9 item 13).
			cmd = exec.CommandContext(ctx, bin, append(args, "config", "-q")...)
			cmd.Env = cleanComposeEnv()
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), "_SECRET") {
				t.Errorf("docker-compose %s config -q without the secrets set: %v (want a refusal naming the variable)\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}

// cleanComposeEnv is the test's environment without the rig's secret variables (and without an
// .env file's effect: compose reads .env from the project directory, which the tests do not
// write), so what the files require is what gets checked.
func cleanComposeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasSuffix(k, "_SECRET") {
			env = append(env, kv)
		}
	}
	return env
}

// TestComposeStructure checks in Go what `config -q` cannot: the services the README relies on,
// pinned images, build contexts and mounted files that exist, each program reading the file
// mounted for it, the host names of every configuration naming a service, and hardened tokengate
// containers.
func TestComposeStructure(t *testing.T) {
	t.Run("docker-compose.yaml", func(t *testing.T) {
		const file = "docker-compose.yaml"
		checkComposeCommon(t, file)
		for _, s := range []string{"envoy", "tokengate", "tokengate-nginx", "tokengate-fwd", "idp", "echo", "envoy-http", "nginx", "caddy", "traefik"} {
			composeService(t, file, s)
		}
		// Each forward-auth gateway's tokengate reads that gateway's header family only
		// (docs/decisions.md#forward-auth-header-families, server.forward_auth_headers), and Envoy's HTTP service's one the
		// request itself.
		for svc, family := range map[string]string{"tokengate": "request", "tokengate-nginx": "x-original", "tokengate-fwd": "x-forwarded"} {
			wantMount(t, file, svc, "tokengate.yaml", configArg(t, file, svc, "--config"))
			checkHardened(t, file, svc)
			if got := composeEnv(t, file, svc)["FORWARD_AUTH_HEADERS"]; got != family {
				t.Errorf("%s: service %s: FORWARD_AUTH_HEADERS %q, want %q", file, svc, got, family)
			}
		}
		// Only nginx's tokengate reads a client certificate header (RFC 8705): nginx sets it
		// from the TLS connection, overwriting the client's; Caddy, Traefik and Envoy's HTTP
		// filter would pass a client's own on.
		for svc, hdr := range map[string]string{"tokengate": "", "tokengate-nginx": "x-client-cert", "tokengate-fwd": ""} {
			if got, ok := composeEnv(t, file, svc)["CLIENT_CERT_HEADER"]; !ok || got != hdr {
				t.Errorf("%s: service %s: CLIENT_CERT_HEADER %q (set %v), want %q", file, svc, got, ok, hdr)
			}
		}
		wantMount(t, file, "nginx", "nginx/tls", "/etc/nginx/tls")
		wantPublished(t, file, "nginx", "127.0.0.1:10443:10443")
		// The gateway ports of tokengate (gRPC, /authz) are never published to the host.
		for _, svc := range []string{"tokengate", "tokengate-nginx", "tokengate-fwd", "idp"} {
			for _, p := range list(composeService(t, file, svc)["ports"]) {
				if strings.HasSuffix(str(p), ":9001") || strings.HasSuffix(str(p), ":9002") {
					t.Errorf("%s: service %s publishes %s: only the gateways may reach tokengate's gRPC port and /authz", file, svc, str(p))
				}
			}
		}
		wantMount(t, file, "envoy", "envoy.yaml", "/etc/envoy/envoy.yaml")
		wantMount(t, file, "envoy-http", "envoy-http.yaml", "/etc/envoy/envoy.yaml")
		wantMount(t, file, "tokengate", "tokengate.yaml", configArg(t, file, "tokengate", "--config"))
		wantMount(t, file, "idp", "idp.yaml", configArg(t, file, "idp", "--config"))
		wantMount(t, file, "nginx", "nginx/nginx.conf", "/etc/nginx/nginx.conf")
		wantMount(t, file, "caddy", "caddy/Caddyfile", "/etc/caddy/Caddyfile")
		wantMount(t, file, "traefik", "traefik/traefik.yml", configArg(t, file, "traefik", "--configFile"))
		wantMount(t, file, "traefik", "traefik/dynamic.yml", traefikDynamicFile(t))
		for svc, port := range map[string]string{"envoy": "10000", "envoy-http": "10001", "nginx": "10002", "caddy": "10003", "traefik": "10004"} {
			wantPublished(t, file, svc, "127.0.0.1:"+port+":10000")
		}
		wantPublished(t, file, "tokengate", "127.0.0.1:8080:8080")
		wantPublished(t, file, "idp", "127.0.0.1:9080:8080")
		for _, s := range []string{"tokengate", "idp"} {
			checkHardened(t, file, s)
		}
		// Every host a configuration of this rig names is a service of the compose network.
		for _, h := range configHosts(t, true) {
			if len(composeServices(t, file, h)) == 0 {
				t.Errorf("a configuration names host %q, which is no service of %s", h, file)
			}
		}
	})

	t.Run("docker-compose.replicas.yaml", func(t *testing.T) {
		const file = "docker-compose.replicas.yaml"
		checkComposeCommon(t, file)
		for _, s := range []string{"envoy", "idp", "echo", "redis", "keygen", "tokengate-a", "tokengate-b"} {
			composeService(t, file, s)
		}
		if got := composeServices(t, file, "tokengate"); !slices.Equal(got, []string{"tokengate-a", "tokengate-b"}) {
			t.Errorf("the name tokengate (envoy.yaml's cluster address) resolves to %v, want both replicas", got)
		}
		wantMount(t, file, "envoy", "envoy.yaml", "/etc/envoy/envoy.yaml")
		keyDir := filepath.Dir(tgReplicasKeyFile(t))
		for _, s := range []string{"tokengate-a", "tokengate-b"} {
			wantMount(t, file, s, "tokengate-replicas.yaml", configArg(t, file, s, "--config"))
			wantMount(t, file, s, "tokengate-keys", keyDir+":ro")
			checkHardened(t, file, s)
		}
		wantMount(t, file, "keygen", "tokengate-keys", keyDir)
		// No forward-auth gateway runs here: only Envoy's and tokengate's hosts.
		for _, h := range configHosts(t, false) {
			if len(composeServices(t, file, h)) == 0 {
				t.Errorf("a configuration names host %q, which is no service of %s", h, file)
			}
		}
	})
}

// checkComposeCommon: pinned images, existing build contexts and Dockerfiles, existing bind-mount
// sources and declared named volumes.
func checkComposeCommon(t *testing.T, file string) {
	t.Helper()
	doc := yamlDoc(t, readFile(t, file))
	services, _ := doc["services"].(map[string]any)
	if len(services) == 0 {
		t.Fatalf("%s: no services", file)
	}
	volumes, _ := doc["volumes"].(map[string]any)
	// Secrets have no default: a default is a credential everyone who read the file holds.
	for _, m := range composeVar.FindAllStringSubmatch(string(readFile(t, file)), -1) {
		if strings.HasSuffix(m[1], "_SECRET") && m[3] != "?" {
			t.Errorf("%s: ${%s} must be required (${%s:?message}), not %q", file, m[1], m[1], m[0])
		}
	}
	pinned := regexp.MustCompile(`^[a-z0-9./_-]+:[A-Za-z0-9._-]+$`)
	// A version tag names a release (x.y.z), not a floating minor line such as 1.28-alpine;
	// a tag that is one number (the echo image's release counter) is a release too.
	floating := regexp.MustCompile(`:v?\d+\.\d+(-[a-z]+)?$`)
	for name := range services {
		svc := composeService(t, file, name)
		image := str(svc["image"])
		build, hasBuild := svc["build"].(map[string]any)
		switch {
		case hasBuild:
			ctxDir := filepath.Join(filepath.Dir(file), str(build["context"]))
			dockerfile := str(build["dockerfile"])
			if dockerfile == "" {
				dockerfile = "Dockerfile"
			}
			if _, err := os.Stat(filepath.Join(ctxDir, dockerfile)); err != nil {
				t.Errorf("%s: service %s builds %s in %s: %v", file, name, dockerfile, ctxDir, err)
			}
		case !pinned.MatchString(image) || strings.HasSuffix(image, ":latest"):
			t.Errorf("%s: service %s: image %q is not pinned to a tag", file, name, image)
		case floating.MatchString(image):
			t.Errorf("%s: service %s: image %q names a floating minor line, not a release (x.y.z)", file, name, image)
		}
		if strings.HasPrefix(image, "envoyproxy/envoy") && !regexp.MustCompile(`^envoyproxy/envoy:v\d+\.\d+\.\d+$`).MatchString(image) {
			t.Errorf("%s: service %s: Envoy image %q is not pinned to a release (vX.Y.Z)", file, name, image)
		}
		vols, _ := svc["volumes"].([]any)
		for _, v := range vols {
			src, _, _ := strings.Cut(str(v), ":")
			switch {
			case strings.HasPrefix(src, "./") || strings.HasPrefix(src, "../"):
				if _, err := os.Stat(filepath.Join(filepath.Dir(file), src)); err != nil {
					t.Errorf("%s: service %s mounts %s: %v", file, name, src, err)
				}
			case strings.HasPrefix(src, "/"):
				t.Errorf("%s: service %s mounts the absolute host path %s: the rig must run from any checkout", file, name, src)
			default:
				if _, ok := volumes[src]; !ok {
					t.Errorf("%s: service %s mounts volume %q, which is not declared", file, name, src)
				}
			}
		}
	}
}

// wantMount fails unless service mounts src (a path relative to this directory, or a named
// volume) at target (optionally with ":ro"), read-only for files.
func wantMount(t *testing.T, file, service, src, target string) {
	t.Helper()
	vols, _ := composeService(t, file, service)["volumes"].([]any)
	want := "./" + src + ":" + target
	if !strings.Contains(src, ".") && !strings.Contains(src, "/") {
		want = src + ":" + target // named volume
	} else if !strings.HasSuffix(target, ":ro") {
		want += ":ro"
	}
	for _, v := range vols {
		if str(v) == want {
			return
		}
	}
	t.Errorf("%s: service %s does not mount %q (volumes %v)", file, service, want, vols)
}

// configArg returns the value after flag in a service's command.
func configArg(t *testing.T, file, service, flag string) string {
	t.Helper()
	args, _ := composeService(t, file, service)["command"].([]any)
	for i, a := range args {
		s := str(a)
		if s == flag && i+1 < len(args) {
			return str(args[i+1])
		}
		if v, ok := strings.CutPrefix(s, flag+"="); ok {
			return v
		}
	}
	t.Errorf("%s: service %s has no %s in its command %v", file, service, flag, args)
	return ""
}

func wantPublished(t *testing.T, file, service, port string) {
	t.Helper()
	ports, _ := composeService(t, file, service)["ports"].([]any)
	for _, p := range ports {
		if str(p) == port {
			return
		}
	}
	t.Errorf("%s: service %s does not publish %s (ports %v)", file, service, port, ports)
}

// checkHardened: tokengate containers run with a read-only root and no capabilities (the image
// itself runs as a non-root user; see TestDockerfile).
func checkHardened(t *testing.T, file, service string) {
	t.Helper()
	svc := composeService(t, file, service)
	if svc["read_only"] != true {
		t.Errorf("%s: service %s: read_only must be true", file, service)
	}
	if caps, _ := svc["cap_drop"].([]any); !slices.Contains(caps, any("ALL")) {
		t.Errorf("%s: service %s: cap_drop must hold ALL", file, service)
	}
}

// composeServices returns the services of file reachable under host: by name or by network
// alias, sorted.
func composeServices(t *testing.T, file, host string) []string {
	t.Helper()
	doc := yamlDoc(t, readFile(t, file))
	services, _ := doc["services"].(map[string]any)
	var out []string
	for name := range services {
		if name == host {
			out = append(out, name)
			continue
		}
		nets, _ := composeService(t, file, name)["networks"].(map[string]any)
		for _, n := range nets {
			nm, _ := n.(map[string]any)
			aliases, _ := nm["aliases"].([]any)
			if slices.Contains(aliases, any(host)) {
				out = append(out, name)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// configHosts returns every host name the rig's configurations connect to: Envoy cluster
// endpoints, tokengate's and the IdP's URLs, and (gateways) the forward-auth examples' addresses.
func configHosts(t *testing.T, gateways bool) []string {
	t.Helper()
	var hosts []string
	add := func(h string) {
		if h != "" && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	for _, f := range envoyFiles {
		b, err := parseBootstrap(readFile(t, f.name))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range b.GetStaticResources().GetClusters() {
			for _, e := range c.GetLoadAssignment().GetEndpoints() {
				for _, lb := range e.GetLbEndpoints() {
					add(lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
				}
			}
		}
	}
	tg := shippedTokengate(t)
	for _, p := range tg.Providers {
		if u, err := url.Parse(p.JWKSURI); err == nil {
			add(u.Hostname())
		}
	}
	for _, r := range tg.Routes {
		if f := r.Upstream.Fetch; f != nil {
			u, _ := url.Parse(f.TokenURL)
			add(u.Hostname())
		}
		if cc := r.Authenticate.ClientCredentials; cc != nil {
			u, _ := url.Parse(cc.TokenURL)
			add(u.Hostname())
		}
	}
	if gateways {
		add(hostOf(shippedNginxTokengate))
		add(hostOf(shippedCaddyTokengate))
		add(shippedUpstreamHost())
		for _, a := range traefikAddresses(t) {
			add(a)
		}
	}
	return hosts
}

func hostOf(addr string) string   { h, _, _ := strings.Cut(addr, ":"); return h }
func shippedUpstreamHost() string { h, _, _ := strings.Cut(shippedUpstream, ":"); return h }
