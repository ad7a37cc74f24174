package issuer

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/tokengate/tokengate/internal/jose"
)

// jwksMaxAge is how long resource servers may cache the JWKS. Rotation publishes a new key well
// before signing with it (docs/issuer.md#key-rotation), so five minutes is harmless.
const jwksMaxAge = 300

// serveJWKS is GET /.well-known/jwks.json: every published key, public parts only.
func (i *Issuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	serveStatic(w, r, i.jwks, "application/json", jwksMaxAge)
}

// serveMetadata is the RFC 8414 document, also served as OpenID discovery (many libraries look
// only there; tokengate is no OpenID provider, so OIDC-only members are absent).
func (i *Issuer) serveMetadata(w http.ResponseWriter, r *http.Request) {
	serveStatic(w, r, i.metadata, "application/json", jwksMaxAge)
}

func serveStatic(w http.ResponseWriter, r *http.Request, body []byte, contentType string, maxAge int) {
	h := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(maxAge))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// metadata is the RFC 8414 §2 document.
type metadata struct {
	Issuer                           string   `json:"issuer"`
	TokenEndpoint                    string   `json:"token_endpoint"`
	JWKSURI                          string   `json:"jwks_uri"`
	IntrospectionEndpoint            string   `json:"introspection_endpoint"`
	GrantTypesSupported              []string `json:"grant_types_supported"`
	ResponseTypesSupported           []string `json:"response_types_supported"`
	TokenEndpointAuthMethods         []string `json:"token_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthMethods []string `json:"introspection_endpoint_auth_methods_supported"`
	// RFC 8414 §2: REQUIRED when the auth methods list private_key_jwt, absent otherwise.
	TokenEndpointAuthSigningAlgs         []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	IntrospectionEndpointAuthSigningAlgs []string `json:"introspection_endpoint_auth_signing_alg_values_supported,omitempty"`
	ScopesSupported                      []string `json:"scopes_supported"`
	AccessTokenSigningAlgValues          []string `json:"access_token_signing_alg_values_supported,omitempty"`
}

// buildMetadata renders the document once. `issuer` is byte for byte the `iss` of our tokens
// (RFC 8414 §3.3); the endpoints hang off it. response_types_supported is REQUIRED by RFC 8414
// but this server has no authorization endpoint, so it is honestly empty.
func (i *Issuer) buildMetadata() ([]byte, error) {
	authMethods := []string{"client_secret_basic", "client_secret_post"}
	grants := []string{grantClientCredentials}
	for _, c := range i.clients {
		if c.keys != nil && !slices.Contains(authMethods, "private_key_jwt") {
			authMethods = append(authMethods, "private_key_jwt")
		}
		if c.exchange && i.subjects != nil && !slices.Contains(grants, GrantTokenExchange) {
			grants = append(grants, GrantTokenExchange)
		}
	}
	m := metadata{
		Issuer:                           i.issuerURL,
		TokenEndpoint:                    i.base + PathToken,
		JWKSURI:                          i.base + PathJWKS,
		IntrospectionEndpoint:            i.base + PathIntrospect,
		GrantTypesSupported:              grants,
		ResponseTypesSupported:           []string{},
		TokenEndpointAuthMethods:         authMethods,
		IntrospectionEndpointAuthMethods: authMethods,
		ScopesSupported:                  i.scopes,
		AccessTokenSigningAlgValues:      i.algs,
	}
	if slices.Contains(authMethods, "private_key_jwt") {
		m.TokenEndpointAuthSigningAlgs = assertionAlgorithms()
		m.IntrospectionEndpointAuthSigningAlgs = assertionAlgorithms()
	}
	if m.ScopesSupported == nil {
		m.ScopesSupported = []string{}
	}
	return json.Marshal(m)
}

// maxIntrospectTokenBytes bounds a token before it is parsed; the body limit bounds it anyway.
const maxIntrospectTokenBytes = MaxBodyBytes

// serveIntrospect is POST /oauth2/introspect (RFC 7662). The caller is authenticated exactly as
// at the token endpoint, behind the same failure limiter (§2.1 requires authorization). The
// answer is {"active":true, …every claim} for a token of this issuer, signed by a published key,
// valid now, and either issued to the calling client (its client_id claim) or asked about by a
// client with `introspect: true` (a resource server); {"active":false} for anything else, with
// no reason (§2.2). RFC 7662 §4: without that rule any client could read, and learn the validity
// of, every other client's tokens (issue 9, finding 12).
func (i *Issuer) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	p, cr, oe := readClientRequest(w, r, introspectParams)
	if oe != nil {
		writeError(w, oe)
		return
	}
	caller, oe := i.authenticate(r, cr)
	if oe != nil {
		writeError(w, oe)
		return
	}
	token, ok := p["token"]
	if !ok {
		writeError(w, errNoToken)
		return
	}
	claims, ok := i.introspect(token)
	if ok && !caller.introspect {
		owner, _ := claims["client_id"].(string)
		ok = owner == caller.id
	}
	if !ok {
		writeJSON(w, http.StatusOK, map[string]bool{"active": false})
		return
	}
	out := make(map[string]any, len(claims)+1)
	maps.Copy(out, claims)
	out["active"] = true
	writeJSON(w, http.StatusOK, out)
}

// introspect verifies token as one of ours: signature by a published key with its algorithm,
// typ at+jwt, iss ours, exp in the future, nbf (if any) not in the future.
func (i *Issuer) introspect(token string) (map[string]any, bool) {
	u, err := jose.Parse(token, maxIntrospectTokenBytes)
	if err != nil {
		return nil, false
	}
	if !strings.EqualFold(strings.TrimPrefix(strings.ToLower(u.Type()), "application/"), TokenType) {
		return nil, false
	}
	c, err := u.Verify(i.keySet, i.algs)
	if err != nil {
		return nil, false
	}
	now := i.now()
	switch {
	case c.Issuer != i.issuerURL:
		return nil, false
	case !c.HasExpiry || !c.Expiry.After(now):
		return nil, false
	case c.HasNotBefore && c.NotBefore.After(now):
		return nil, false
	}
	return c.Raw, true
}
