package extauthz

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
)

// ForwardAuthPath is the prefix of the forward-auth endpoint (SPEC section 6).
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
}

// NewForwardAuth returns the forward-auth handler for d.
func NewForwardAuth(d Decider, logger *slog.Logger) *ForwardAuth {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &ForwardAuth{decider: d, logger: logger}
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
	d := f.decider.Decide(r.Context(), RequestFromForwardAuth(r))
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
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if d.WWWAuthenticate != "" {
		h.Set("WWW-Authenticate", d.WWWAuthenticate)
	}
	w.WriteHeader(d.Status)
	_, _ = io.WriteString(w, d.Body())
}

// RequestFromForwardAuth recovers the original request: X-Forwarded-Method/-Host/-Uri (Traefik,
// Caddy), X-Original-Method/-URI (nginx), or the request itself minus the /authz prefix (Envoy's
// HTTP ext_authz prepends its path_prefix to the original path).
func RequestFromForwardAuth(r *http.Request) Request {
	req := Request{
		Method:        firstNonEmpty(r.Header.Get("X-Forwarded-Method"), r.Header.Get("X-Original-Method"), r.Method),
		Authority:     firstNonEmpty(r.Header.Get("X-Forwarded-Host"), r.Host),
		Authorization: r.Header.Values("Authorization"),
	}
	if uri := firstNonEmpty(r.Header.Get("X-Forwarded-Uri"), r.Header.Get("X-Original-URI")); uri != "" {
		req.Path = uri
	} else {
		path := strings.TrimPrefix(r.URL.RequestURI(), ForwardAuthPath)
		if path == "" || path[0] != '/' {
			path = "/" + path
		}
		req.Path = path
	}
	return req
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
