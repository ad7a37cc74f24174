package extauthz

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"

	"github.com/tokengate/tokengate/internal/authlimit"
)

// ForwardAuthPath is the prefix of the forward-auth endpoint
// (docs/decisions.md#forward-auth-header-families).
const ForwardAuthPath = "/authz"

// ForwardAuth is the HTTP forward-auth endpoint for gateways that ask over HTTP: Envoy's HTTP
// ext_authz (path_prefix /authz), nginx auth_request, Traefik forwardAuth and Caddy
// forward_auth. It gives the same decision as Check.
//
// Named routes are not taken from forward-auth requests: over HTTP the route name would come from
// something the client controls (the path or a header), so routes are chosen by match only.
type ForwardAuth struct {
	decider Decider
	logger  *slog.Logger
	opts    ForwardAuthOptions
	mode    string // one of the ForwardAuthHeaders* values, "" when opts.Headers is unknown
}

// The families of headers forward-auth reads the original request from
// (server.forward_auth_headers, docs/decisions.md#forward-auth-header-families).
const (
	// ForwardAuthHeadersAuto (the default): the first family present, in the order below;
	// when both header families are present they must agree.
	ForwardAuthHeadersAuto = "auto"
	// ForwardAuthHeadersXForwarded: X-Forwarded-Method, -Host and -Uri (Traefik, Caddy).
	ForwardAuthHeadersXForwarded = "x-forwarded"
	// ForwardAuthHeadersXOriginal: X-Original-URI and X-Original-Method, host from Host (nginx).
	ForwardAuthHeadersXOriginal = "x-original"
	// ForwardAuthHeadersRequest: the request itself minus the /authz prefix (Envoy's HTTP
	// ext_authz with path_prefix /authz).
	ForwardAuthHeadersRequest = "request"
)

// ForwardAuthOptions configure the forward-auth endpoint.
type ForwardAuthOptions struct {
	// Headers is server.forward_auth_headers: one of the ForwardAuthHeaders* values; "" is auto.
	Headers string
	// TrustedProxies (server.trusted_proxies) are the peers whose X-Forwarded-For names the
	// client for Request.ClientIP; empty: the socket peer is the client.
	TrustedProxies []netip.Prefix
	// ClientCertHeader (server.client_cert_header) names the header in which the gateway sends
	// the caller's URL-encoded PEM client certificate (nginx $ssl_client_escaped_cert), for
	// certificate-bound tokens (RFC 8705 §3); "" reads none. The gateway must always set it,
	// empty when there is no certificate, so that a client can never send its own.
	ClientCertHeader string
}

// Validate reports an unknown Headers value.
func (o ForwardAuthOptions) Validate() error {
	switch o.Headers {
	case "", ForwardAuthHeadersAuto, ForwardAuthHeadersXForwarded, ForwardAuthHeadersXOriginal, ForwardAuthHeadersRequest:
		return nil
	}
	return fmt.Errorf("forward_auth_headers %q: want auto, x-forwarded, x-original or request", o.Headers)
}

// NewForwardAuth returns the forward-auth handler for d. An unknown opts.Headers is a wiring
// mistake (the config package refuses it; Validate tells): rather than guess which headers to
// trust, the handler then fails closed, answering every request 503, and says why in the log.
func NewForwardAuth(d Decider, logger *slog.Logger, opts ForwardAuthOptions) *ForwardAuth {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &ForwardAuth{decider: d, logger: logger, opts: opts, mode: opts.Headers}
	if f.mode == "" {
		f.mode = ForwardAuthHeadersAuto
	}
	if err := opts.Validate(); err != nil {
		f.mode = ""
		logger.Error("forward-auth denies every request (503)", slog.String("error", err.Error()))
	}
	return f
}

// ServeHTTP answers 200 with the headers the gateway copies upstream, or the denial.
func (f *ForwardAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			f.logger.ErrorContext(r.Context(), "forward-auth panicked; denying", slog.Any("panic", v))
			d := unavailable("the authorization server failed", "internal error")
			writeDenial(w, &d)
		}
	}()
	// The body is never read; drain a little so keep-alive connections can be reused.
	_, _ = io.CopyN(io.Discard, r.Body, 4096)
	if f.mode == "" {
		d := unavailable("the authorization server failed", "forward_auth_headers is unknown")
		writeDenial(w, &d)
		return
	}
	req, err := RequestFromForwardAuth(r, f.opts)
	if err != nil {
		// The route is not known yet (the request that would choose it is in doubt), so the
		// challenge is Bearer's, the scheme of most routes.
		d := invalidRequest(schemeBearer, err.Error())
		f.logger.LogAttrs(r.Context(), slog.LevelInfo, "request denied",
			slog.Int("status", d.Status), slog.String("reason", d.Reason))
		writeDenial(w, &d)
		return
	}
	d := f.decider.Decide(r.Context(), req)
	if !d.Allowed {
		writeDenial(w, &d)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	for _, hv := range d.SetHeaders {
		h.Set(hv.Name, hv.Value)
	}
	if len(d.RemoveHeaders) > 0 {
		for _, name := range d.RemoveHeaders {
			// nginx (auth_request_set + proxy_set_header) and Caddy drop a header set to "".
			h[http.CanonicalHeaderKey(name)] = []string{""}
		}
		// Envoy's HTTP ext_authz removes the headers this lists (its HTTP-service counterpart of
		// headers_to_remove).
		h.Set("X-Envoy-Auth-Headers-To-Remove", strings.Join(d.RemoveHeaders, ", "))
	}
	if d.Passthrough {
		if v := r.Header.Get("Authorization"); v != "" {
			h.Set("Authorization", v)
		}
	}
	w.WriteHeader(http.StatusOK)
}

func writeDenial(w http.ResponseWriter, d *Decision) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	for _, hv := range d.DenialHeaders() {
		h.Set(hv.Name, hv.Value)
	}
	w.WriteHeader(d.Status)
	_, _ = io.WriteString(w, d.Body())
}

// Errors of RequestFromForwardAuth; each is a fixed text, safe to send as an error_description.
var (
	errForwardRepeated = errors.New("a forwarded request header is repeated")
	errForwardEmpty    = errors.New("the forwarded request URI is empty")
	errForwardMissing  = errors.New("the forwarded request URI is missing")
	errForwardConflict = errors.New("the X-Forwarded and X-Original request headers disagree")
)

// original is the request a gateway asks about, as one header family describes it.
type original struct {
	method, host, uri string
}

// RequestFromForwardAuth recovers the original request per opts.Headers
// (docs/decisions.md#forward-auth-header-families):
//   - x-forwarded: X-Forwarded-Method, X-Forwarded-Host, X-Forwarded-Uri (Traefik, Caddy);
//   - x-original: X-Original-URI, X-Original-Method, host from Host (nginx);
//   - request: the request itself minus the /authz prefix (Envoy's HTTP ext_authz prepends its
//     path_prefix to the original path);
//   - auto: the first family present in that order. A family is present when its URI header is;
//     a present family's missing method or host falls back to the request's own. When both
//     header families are present, one of them came from the client (a gateway sets one family,
//     or both alike), so their URI, method and host must agree.
//
// Under an explicit mode the other families' headers are ignored. A header of a family read
// that is sent twice, an empty URI header, and under x-forwarded or x-original a missing URI
// header, are errors (a 400 invalid_request). An unknown opts.Headers reads as auto.
// Request.ClientIP is the peer, or behind opts.TrustedProxies the client X-Forwarded-For names.
func RequestFromForwardAuth(r *http.Request, opts ForwardAuthOptions) (Request, error) {
	req := Request{
		Authorization: r.Header.Values("Authorization"),
		ClientIP:      authlimit.ClientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), opts.TrustedProxies),
	}
	var o original
	switch opts.Headers {
	case ForwardAuthHeadersXForwarded, ForwardAuthHeadersXOriginal:
		family := forwardedFamily
		if opts.Headers == ForwardAuthHeadersXOriginal {
			family = originalFamily
		}
		var present bool
		var err error
		o, present, err = family(r)
		switch {
		case err != nil:
			return Request{}, err
		case !present:
			return Request{}, errForwardMissing
		}
	case ForwardAuthHeadersRequest:
		o = ownRequest(r)
	default: // auto
		fwd, fwdPresent, err := forwardedFamily(r)
		if err != nil {
			return Request{}, err
		}
		orig, origPresent, err := originalFamily(r)
		if err != nil {
			return Request{}, err
		}
		switch {
		case fwdPresent && origPresent:
			if fwd.uri != orig.uri || fwd.method != orig.method || !sameHost(fwd.host, orig.host) {
				return Request{}, errForwardConflict
			}
			o = fwd
		case fwdPresent:
			o = fwd
		case origPresent:
			o = orig
		default:
			o = ownRequest(r)
		}
	}
	req.Method, req.Authority, req.Path = o.method, o.host, o.uri
	// What a DPoP proof's htu (RFC 9449 §4.3) and a certificate-bound token (RFC 8705 §3) need.
	req.DPoP = r.Header.Values("DPoP")
	proto, _, err := single(r.Header, "X-Forwarded-Proto")
	if err != nil {
		return Request{}, err
	}
	req.Scheme = strings.TrimSpace(proto)
	if opts.ClientCertHeader != "" {
		cert, _, err := single(r.Header, opts.ClientCertHeader)
		if err != nil {
			return Request{}, err
		}
		req.ClientCert = strings.TrimSpace(cert)
	}
	return req, nil
}

// forwardedFamily reads X-Forwarded-Uri, -Method and -Host; present when X-Forwarded-Uri is.
func forwardedFamily(r *http.Request) (original, bool, error) {
	uri, present, err := single(r.Header, "X-Forwarded-Uri")
	if err != nil || !present {
		return original{}, false, err
	}
	if uri == "" {
		return original{}, false, errForwardEmpty
	}
	method, hasMethod, err := single(r.Header, "X-Forwarded-Method")
	if err != nil {
		return original{}, false, err
	}
	host, hasHost, err := single(r.Header, "X-Forwarded-Host")
	if err != nil {
		return original{}, false, err
	}
	if !hasMethod || method == "" {
		method = r.Method
	}
	if !hasHost || host == "" {
		host = r.Host
	}
	return original{method: method, host: host, uri: uri}, true, nil
}

// originalFamily reads X-Original-URI and -Method, host from Host; present when X-Original-URI
// is.
func originalFamily(r *http.Request) (original, bool, error) {
	uri, present, err := single(r.Header, "X-Original-URI")
	if err != nil || !present {
		return original{}, false, err
	}
	if uri == "" {
		return original{}, false, errForwardEmpty
	}
	method, hasMethod, err := single(r.Header, "X-Original-Method")
	if err != nil {
		return original{}, false, err
	}
	if !hasMethod || method == "" {
		method = r.Method
	}
	return original{method: method, host: r.Host, uri: uri}, true, nil
}

// ownRequest is the request itself minus the /authz prefix (Envoy's HTTP ext_authz). The path is
// the request-target as sent (r.RequestURI), not the one net/http decoded, so that the
// normalizer sees the escapes the upstream will.
func ownRequest(r *http.Request) original {
	uri := r.RequestURI
	if !strings.HasPrefix(uri, "/") { // absolute-form, or a request built in-process
		uri = r.URL.RequestURI()
	}
	if rest, ok := strings.CutPrefix(uri, ForwardAuthPath); ok && (rest == "" || rest[0] == '/' || rest[0] == '?') {
		uri = rest
		if uri == "" || uri[0] == '?' {
			uri = "/" + uri
		}
	}
	return original{method: r.Method, host: r.Host, uri: uri}
}

// single returns the one value of a header, whether it was sent, and an error when it was sent
// more than once: a gateway sets each of these headers once, so a second one came from the
// client, and which of the two the gateway meant is unknowable.
func single(h http.Header, name string) (string, bool, error) {
	vs := h.Values(name)
	switch len(vs) {
	case 0:
		return "", false, nil
	case 1:
		return vs[0], true, nil
	}
	return "", true, errForwardRepeated
}

// sameHost compares two authorities as route selection would (normalizeAuthority): nginx sends
// `X-Forwarded-Host: $host`, which has no port and is in lower case, next to `Host: $host` or
// the client's own Host header.
func sameHost(a, b string) bool {
	if a == b {
		return true
	}
	na, okA := normalizeAuthority(a)
	nb, okB := normalizeAuthority(b)
	return okA && okB && na == nb
}
