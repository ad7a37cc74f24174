// Package envoy holds the files that put tokengate behind a gateway: Envoy bootstraps (ext_authz
// over gRPC in envoy.yaml, over HTTP in envoy-http.yaml) with the tokengate.yaml they name, the
// Istio extension providers and Kubernetes manifests (istio/), the docker-compose rigs, and
// forward-auth examples for nginx, Caddy and Traefik. envoy_test.go proves them valid against
// Envoy's and Istio's own API types and against tokengate's configuration rules.
//
// The Go code here only renders the shipped nginx and Caddy examples with other addresses, so
// end-to-end tests can run the very files users copy against real gateways on loopback ports.
package envoy

import (
	_ "embed"
	"fmt"
	"net"
	"path/filepath"
	"strings"
)

//go:embed nginx/nginx.conf
var nginxConf string

//go:embed caddy/Caddyfile
var caddyfile string

// The addresses the shipped examples use: the compose network's service names and the port every
// gateway of the rig listens on inside its container. Each forward-auth gateway asks its own
// tokengate's authz_addr (9002): nginx one that reads the X-Original-* family
// (forward_auth_headers: x-original), Caddy and Traefik one that reads X-Forwarded-*.
const (
	shippedListenPort     = "10000"
	shippedNginxTokengate = "tokengate-nginx:9002"
	shippedCaddyTokengate = "tokengate-fwd:9002"
	shippedUpstream       = "echo:8080"
)

// Addrs are where a rendered gateway example listens and whom it calls. Each is host:port.
type Addrs struct {
	// Listen is the address the gateway listens on, e.g. "127.0.0.1:18080".
	Listen string
	// Tokengate is the address of tokengate's forward-auth listener (authz_addr, or http_addr
	// when it has none) serving /authz.
	Tokengate string
	// Upstream is the address of the protected upstream.
	Upstream string
	// TLS, when set, keeps nginx's TLS listener (client certificates, RFC 8705) with these
	// address and files; nil removes it. Caddyfile refuses it.
	TLS *NginxTLS
}

// NginxTLS is the TLS listener of the nginx example: where it listens and its files (absolute
// paths, PEM).
type NginxTLS struct {
	// Listen is the host:port of the TLS listener, e.g. "127.0.0.1:18443".
	Listen string
	// Cert and Key are the server's certificate and private key.
	Cert, Key string
	// ClientCA holds the certificate authorities client certificates must chain to.
	ClientCA string
}

// The shipped TLS listener and files of nginx/nginx.conf.
const (
	shippedTLSListen   = "listen 10443 ssl;"
	shippedTLSCert     = "ssl_certificate /etc/nginx/tls/server.crt;"
	shippedTLSKey      = "ssl_certificate_key /etc/nginx/tls/server.key;"
	shippedTLSClientCA = "ssl_client_certificate /etc/nginx/tls/client-ca.crt;"
)

// check refuses anything but plain host:port values, so a rendered file never gains directives
// from an address.
func (a Addrs) check() error {
	for _, f := range []struct{ name, v string }{{"Listen", a.Listen}, {"Tokengate", a.Tokengate}, {"Upstream", a.Upstream}} {
		host, port, err := net.SplitHostPort(f.v)
		if err != nil || port == "" || strings.ContainsAny(f.v, unsafeChars) {
			return fmt.Errorf("envoy: %s address %q is not a plain host:port", f.name, f.v)
		}
		if f.name != "Listen" && host == "" {
			return fmt.Errorf("envoy: %s address %q has no host", f.name, f.v)
		}
	}
	if t := a.TLS; t != nil {
		if _, port, err := net.SplitHostPort(t.Listen); err != nil || port == "" || strings.ContainsAny(t.Listen, unsafeChars) {
			return fmt.Errorf("envoy: TLS listen address %q is not a plain host:port", t.Listen)
		}
		for _, f := range []struct{ name, v string }{{"Cert", t.Cert}, {"Key", t.Key}, {"ClientCA", t.ClientCA}} {
			if !filepath.IsAbs(f.v) || strings.ContainsAny(f.v, unsafeChars) {
				return fmt.Errorf("envoy: TLS %s %q must be an absolute path without spaces or quotes", f.name, f.v)
			}
		}
	}
	return nil
}

// unsafeChars may not appear in a value put into a rendered file: each could end a directive or
// start another one.
const unsafeChars = " \t\r\n;{}\"'#$\\"

// replaceExactly replaces old by new in s and fails unless old occurs exactly n times, so a
// change to a shipped file that a renderer would silently miss breaks the tests instead.
func replaceExactly(s, old, new string, n int) (string, error) {
	if c := strings.Count(s, old); c != n {
		return "", fmt.Errorf("envoy: expected %d occurrence(s) of %q in the shipped file, found %d", n, old, c)
	}
	return strings.ReplaceAll(s, old, new), nil
}

// NginxConfig returns nginx/nginx.conf with its addresses replaced by a's, set up to run
// unprivileged from the directory dir (absolute, no spaces): in the foreground as a single
// process of the invoking user (daemon off, master_process off), with its pid file, temporary
// files and error log under dir. Run it with
//
//	nginx -p DIR -c DIR/nginx.conf -e DIR/error.log
//
// (nginx 1.19.5+ takes -e; it is needed since nginx opens its compiled-in error log before
// reading the file). The access log goes to standard output as in the shipped file.
func NginxConfig(a Addrs, dir string) (string, error) {
	if err := a.check(); err != nil {
		return "", err
	}
	if !filepath.IsAbs(dir) || strings.ContainsAny(dir, unsafeChars) {
		return "", fmt.Errorf("envoy: nginx directory %q must be an absolute path without spaces or quotes", dir)
	}
	s := nginxConf
	var err error
	steps := []struct {
		old, new string
	}{
		{"listen " + shippedListenPort + ";", "listen " + a.Listen + ";"},
		{"proxy_pass http://" + shippedNginxTokengate + "/authz;", "proxy_pass http://" + a.Tokengate + "/authz;"},
		{"proxy_pass http://" + shippedUpstream + ";", "proxy_pass http://" + a.Upstream + ";"},
		{"worker_processes auto;", "worker_processes 1;\ndaemon off;\nmaster_process off;\n" +
			"pid " + dir + "/nginx.pid;\nerror_log " + dir + "/error.log info;"},
		{"http {\n", "http {\n" +
			"    client_body_temp_path " + dir + "/client_body;\n" +
			"    proxy_temp_path " + dir + "/proxy;\n" +
			"    fastcgi_temp_path " + dir + "/fastcgi;\n" +
			"    uwsgi_temp_path " + dir + "/uwsgi;\n" +
			"    scgi_temp_path " + dir + "/scgi;\n"},
	}
	// The TLS listener: rewritten, or removed with its files when a.TLS is nil (nginx will not
	// start a TLS listener without them).
	tls := []struct{ old, new string }{
		{shippedTLSListen, ""}, {shippedTLSCert, ""}, {shippedTLSKey, ""}, {shippedTLSClientCA, ""},
	}
	if t := a.TLS; t != nil {
		tls[0].new = "listen " + t.Listen + " ssl;"
		tls[1].new = "ssl_certificate " + t.Cert + ";"
		tls[2].new = "ssl_certificate_key " + t.Key + ";"
		tls[3].new = "ssl_client_certificate " + t.ClientCA + ";"
	} else {
		tls = append(tls, struct{ old, new string }{"ssl_verify_client optional;", ""},
			struct{ old, new string }{"ssl_verify_depth 2;", ""},
			struct{ old, new string }{"ssl_protocols TLSv1.2 TLSv1.3;", ""})
	}
	for _, st := range append(steps, tls...) {
		if s, err = replaceExactly(s, st.old, st.new, 1); err != nil {
			return "", err
		}
	}
	return s, nil
}

// Caddyfile returns caddy/Caddyfile with its addresses replaced by a's; the site binds to the
// host of a.Listen when it has one. Run it with
//
//	caddy run --config FILE --adapter caddyfile
//
// with HOME and XDG_DATA_HOME/XDG_CONFIG_HOME pointing at a writable directory (Caddy keeps a
// small state there even with automatic HTTPS and the admin endpoint off).
func Caddyfile(a Addrs) (string, error) {
	if err := a.check(); err != nil {
		return "", err
	}
	if a.TLS != nil {
		return "", fmt.Errorf("envoy: the Caddyfile example has no TLS listener")
	}
	host, port, _ := net.SplitHostPort(a.Listen)
	site := ":" + port + " {"
	if host != "" {
		site += "\n\tbind " + host
	}
	s := caddyfile
	var err error
	steps := []struct{ old, new string }{
		{":" + shippedListenPort + " {", site},
		{"forward_auth " + shippedCaddyTokengate + " {", "forward_auth " + a.Tokengate + " {"},
		{"reverse_proxy " + shippedUpstream + "\n", "reverse_proxy " + a.Upstream + "\n"},
	}
	for _, st := range steps {
		if s, err = replaceExactly(s, st.old, st.new, 1); err != nil {
			return "", err
		}
	}
	return s, nil
}
