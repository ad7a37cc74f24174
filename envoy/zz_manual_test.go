package envoy

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestZZManual(t *testing.T) {
	if os.Getenv("ZZMANUAL") == "" {
		t.Skip()
	}
	auth := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uri := r.Header.Get("X-Forwarded-Uri")
		if uri == "" {
			uri = r.Header.Get("X-Original-URI")
		}
		if uri == "" {
			uri = strings.TrimPrefix(r.URL.RequestURI(), "/authz")
		}
		fmt.Fprintf(os.Stderr, "AUTHZ %s %s host=%s xfh=%s fwd-method=%s orig-method=%s authz=%q\n", r.Method, uri, r.Host, r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Method"), r.Header.Get("X-Original-Method"), r.Header.Get("Authorization"))
		a := r.Header.Get("Authorization")
		deny := func(code int, chal, body string) {
			w.Header().Set("Content-Type", "application/json")
			if chal != "" {
				w.Header().Set("WWW-Authenticate", chal)
			}
			w.WriteHeader(code)
			io.WriteString(w, body)
		}
		switch {
		case strings.HasPrefix(uri, "/none/"):
			w.Header()["Authorization"] = []string{""}
			w.Header().Set("X-Envoy-Auth-Headers-To-Remove", "authorization")
			w.WriteHeader(200)
			return
		case strings.HasPrefix(uri, "/busy/"):
			deny(503, "", `{"error":"temporarily_unavailable"}`)
			return
		case a == "":
			deny(401, `Bearer realm="tokengate"`, `{"error":"unauthorized"}`)
			return
		case a == "Bearer":
			deny(400, `Bearer realm="tokengate", error="invalid_request"`, `{"error":"invalid_request"}`)
			return
		case a != "Bearer good":
			deny(401, `Bearer realm="tokengate", error="invalid_token", error_description="bad"`, `{"error":"invalid_token"}`)
			return
		case strings.HasPrefix(uri, "/scope/"):
			deny(403, `Bearer realm="tokengate", error="insufficient_scope", scope="a b"`, `{"error":"insufficient_scope"}`)
			return
		case strings.HasPrefix(uri, "/claim/"):
			deny(403, "", `{"error":"access_denied"}`)
			return
		case strings.HasPrefix(uri, "/passthrough/"):
			w.Header().Set("Authorization", a)
			w.Header().Set("X-Subject", "alice")
		case strings.HasPrefix(uri, "/remove/"):
			w.Header()["Authorization"] = []string{""}
			w.Header().Set("X-Subject", "alice")
			w.Header()["X-Scopes"] = []string{""}
			w.Header().Set("X-Envoy-Auth-Headers-To-Remove", "authorization, x-scopes")
		default:
			w.Header().Set("Authorization", "Bearer minted")
			w.Header().Set("X-Subject", "alice")
			w.Header()["X-Scopes"] = []string{""}
			w.Header().Set("X-Envoy-Auth-Headers-To-Remove", "x-scopes")
		}
		w.WriteHeader(200)
	})
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := map[string]any{"path": r.URL.RequestURI(), "headers": r.Header}
		json.NewEncoder(w).Encode(h)
	})
	la, _ := net.Listen("tcp", "127.0.0.1:0")
	le, _ := net.Listen("tcp", "127.0.0.1:0")
	go http.Serve(la, auth)
	go http.Serve(le, echo)
	free := func() string { l, _ := net.Listen("tcp", "127.0.0.1:0"); a := l.Addr().String(); l.Close(); return a }
	dir := "/tmp/envoyman"
	ngAddr, caAddr := free(), free()
	a := Addrs{Listen: ngAddr, Tokengate: la.Addr().String(), Upstream: le.Addr().String()}
	conf, err := NginxConfig(a, dir)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644)
	ng := exec.Command("nginx", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
	ng.Stdout, ng.Stderr = os.Stderr, os.Stderr
	if err := ng.Start(); err != nil {
		t.Fatal(err)
	}
	defer ng.Process.Kill()
	a.Listen = caAddr
	cf, err := Caddyfile(a)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(cf), 0o644)
	ca := exec.Command("caddy", "run", "--config", filepath.Join(dir, "Caddyfile"), "--adapter", "caddyfile")
	ca.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir+"/data", "XDG_CONFIG_HOME="+dir+"/cfg")
	ca.Stdout, ca.Stderr = os.Stderr, os.Stderr
	if err := ca.Start(); err != nil {
		t.Fatal(err)
	}
	defer ca.Process.Kill()
	time.Sleep(4000 * time.Millisecond)
	for _, gw := range []string{ngAddr, caAddr} {
		fmt.Println("=========== gateway", gw)
		for _, c := range []struct{ path, auth string; extra map[string]string }{
			{"/mint/x", "Bearer good", map[string]string{"X-Subject": "mallory", "X-Scopes": "admin", "X-Forwarded-Uri": "/none/x"}},
			{"/mint/x", "", nil},
			{"/mint/x", "Bearer bad", nil},
			{"/mint/x", "Bearer ", nil},
			{"/scope/x", "Bearer good", nil},
			{"/claim/x", "Bearer good", nil},
			{"/busy/x", "Bearer good", nil},
			{"/passthrough/x", "Bearer good", nil},
			{"/remove/x", "Bearer good", nil},
			{"/none/x", "Bearer whatever", map[string]string{"X-Subject": "mallory"}},
			{"/none/../mint/x", "", nil},
			{"/healthz", "", nil},
		} {
			req, _ := http.NewRequest("GET", "http://"+gw+c.path, nil)
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			for k, v := range c.extra {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				fmt.Println(c.path, "ERR", err)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			fmt.Printf("%s auth=%q -> %d www=%q ct=%q body=%s\n", c.path, c.auth, resp.StatusCode, resp.Header.Values("Www-Authenticate"), resp.Header.Get("Content-Type"), strings.TrimSpace(string(b)))
		}
	}
}
