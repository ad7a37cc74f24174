package testenv

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// GatewayRoute is one route of the stand-in gateway, as an Envoy route with an
// ExtAuthzPerRoute: requests whose path starts with Prefix carry context_extensions
// {"route": Name}; Disabled skips ext_authz (a health route).
type GatewayRoute struct {
	Prefix   string
	Name     string // context_extensions["route"]; "" sends none (as under Istio)
	Disabled bool
}

// GatewayOptions configure a Gateway.
type GatewayOptions struct {
	Addr          string         // listen address; default 127.0.0.1:0
	CheckAddr     string         // tokengate's gRPC address
	UpstreamURL   string         // where allowed requests go
	Routes        []GatewayRoute // first matching prefix wins; no match: no context extensions
	Timeout       time.Duration  // ext_authz timeout; default 2 s (Envoy's default is 200 ms)
	StatusOnError int            // answer when Check fails as an RPC; default 503 (our envoy.yaml)
	// TLS, when set, makes the gateway a TLS listener, as an Envoy listener with a
	// DownstreamTlsContext: the request's scheme is then https, and a client certificate the
	// handshake received goes to Check as Envoy's include_peer_certificate sends it. Set
	// ClientAuth (tls.RequestClientCert or stricter) for clients to present one.
	TLS *tls.Config
}

// Gateway stands in for Envoy's ext_authz HTTP filter in front of one upstream: it calls
// envoy.service.auth.v3.Authorization/Check as Envoy does and applies the answer as Envoy does —
// header mutations honour append_action, headers_to_remove apply after the sets, a denial's
// status, headers and body go to the client (403 when it carries no status), and an RPC error
// answers StatusOnError (failure_mode_allow: false).
type Gateway struct {
	opts   GatewayOptions
	conn   *grpc.ClientConn
	client authv3.AuthorizationClient
	proxy  *httputil.ReverseProxy
	srv    *httptest.Server
}

// NewGateway starts the gateway.
func NewGateway(opts GatewayOptions) (*Gateway, error) {
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.StatusOnError == 0 {
		opts.StatusOnError = http.StatusServiceUnavailable
	}
	up, err := url.Parse(opts.UpstreamURL)
	if err != nil {
		return nil, fmt.Errorf("upstream url: %w", err)
	}
	conn, err := grpc.NewClient(opts.CheckAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial check server: %w", err)
	}
	g := &Gateway{opts: opts, conn: conn, client: authv3.NewAuthorizationClient(conn)}
	g.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.Out.Host = pr.In.Host
		},
	}
	if opts.TLS != nil {
		g.srv, err = startTLSServer(opts.Addr, g, opts.TLS)
	} else {
		g.srv, err = startServer(opts.Addr, g)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return g, nil
}

// URL is the gateway's base URL.
func (g *Gateway) URL() string { return g.srv.URL }

// Close stops the gateway.
func (g *Gateway) Close() {
	g.srv.Close()
	g.conn.Close()
}

func (g *Gateway) route(path string) (GatewayRoute, bool) {
	for _, r := range g.opts.Routes {
		if strings.HasPrefix(path, r.Prefix) {
			return r, true
		}
	}
	return GatewayRoute{}, false
}

// ServeHTTP authorizes, mutates and forwards one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, found := g.route(r.URL.Path)
	if found && rt.Disabled {
		g.proxy.ServeHTTP(w, r)
		return
	}
	req := CheckRequestFor(r)
	if found && rt.Name != "" {
		req.Attributes.ContextExtensions = map[string]string{"route": rt.Name}
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.opts.Timeout)
	defer cancel()
	resp, err := g.client.Check(ctx, req)
	if err != nil {
		w.WriteHeader(g.opts.StatusOnError)
		return
	}
	if resp.GetStatus().GetCode() != int32(code.Code_OK) {
		writeDenied(w, resp.GetDeniedResponse())
		return
	}
	ApplyOK(r.Header, resp.GetOkResponse())
	g.proxy.ServeHTTP(w, r)
}

// startTLSServer is startServer with TLS: the certificates and client authentication of cfg.
func startTLSServer(addr string, h http.Handler, cfg *tls.Config) (*httptest.Server, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l
	srv.TLS = cfg.Clone()
	srv.StartTLS()
	return srv, nil
}

// CheckRequestFor builds the CheckRequest Envoy sends for r: lower-case header names, repeated
// headers joined with commas (the DPoP header among them), pseudo-headers included; the scheme
// of the connection (https on TLS, whatever the client's X-Forwarded-Proto says: Envoy's
// :scheme is its own); and, on TLS, the client's certificate in attributes.source.certificate.
func CheckRequestFor(r *http.Request) *authv3.CheckRequest {
	headers := map[string]string{
		":authority": r.Host,
		":path":      r.URL.RequestURI(),
		":method":    r.Method,
	}
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		headers[strings.ToLower(k)] = strings.Join(r.Header.Values(k), ",")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: r.Method, Path: r.URL.RequestURI(), Host: r.Host, Scheme: scheme,
			Protocol: r.Proto, Headers: headers,
		}},
	}}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		der := r.TLS.PeerCertificates[0].Raw
		req.Attributes.Source = &authv3.AttributeContext_Peer{
			Certificate: EnvoyURLEncode(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))),
		}
	}
	return req
}

// EnvoyURLEncode percent-encodes s as Envoy encodes the peer certificate it sends with
// include_peer_certificate (a URL-encoded PEM): every byte but RFC 3986 §2.3's unreserved
// characters becomes %XX, so spaces are %20 and newlines %0A.
func EnvoyURLEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) * 3 / 2)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// ApplyOK applies an OkHttpResponse to request headers as Envoy does: each header by its
// append_action (the deprecated `append` flag, when set, decides between append and
// overwrite), then headers_to_remove.
func ApplyOK(h http.Header, ok *authv3.OkHttpResponse) {
	for _, hvo := range ok.GetHeaders() {
		k, v := hvo.GetHeader().GetKey(), hvo.GetHeader().GetValue()
		action := hvo.GetAppendAction()
		//lint:ignore SA1019 Envoy still honours the deprecated flag, so the stand-in does too
		if a := hvo.GetAppend(); a != nil {
			action = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
			if a.GetValue() {
				action = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
			}
		}
		_, exists := h[http.CanonicalHeaderKey(k)]
		switch action {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			h.Add(k, v)
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if !exists {
				h.Set(k, v)
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			h.Set(k, v)
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if exists {
				h.Set(k, v)
			}
		}
	}
	for _, k := range ok.GetHeadersToRemove() {
		if strings.HasPrefix(k, ":") || strings.EqualFold(k, "host") {
			continue // Envoy ignores pseudo-headers and Host here
		}
		h.Del(k)
	}
}

func writeDenied(w http.ResponseWriter, d *authv3.DeniedHttpResponse) {
	for _, hvo := range d.GetHeaders() {
		w.Header().Set(hvo.GetHeader().GetKey(), hvo.GetHeader().GetValue())
	}
	status := int(d.GetStatus().GetCode())
	if status == 0 {
		status = http.StatusForbidden // Envoy's answer for a denial without a status
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, d.GetBody())
}
