package extauthz

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/replay"
	"github.com/tokengate/tokengate/internal/verify"
)

// The values of require_binding (docs/decisions.md#bound-tokens).
const (
	BindingNone = "none" // no binding required ("" too)
	BindingDPoP = "dpop" // a DPoP-bound token with its proof (RFC 9449)
	BindingMTLS = "mtls" // a certificate-bound token with its certificate (RFC 8705)
	BindingAny  = "any"  // either
)

// Binding is one provider's settings for sender-constrained tokens.
type Binding struct {
	Require    string        // one of the Binding* values; "" is BindingNone
	Algorithms []string      // the DPoP proof algorithms it allows: the provider's allow-list
	ClockSkew  time.Duration // widens a proof's iat window
}

// dpopWindow is how far a proof's iat may be from now, either way, before the provider's clock
// skew: RFC 9449 §11.1 asks for a window of "seconds or minutes", short enough to bound the
// replay cache.
const dpopWindow = 60 * time.Second

// errInvalidDPoPProof is RFC 9449 §7.1's error code for a missing, malformed or failing proof.
const errInvalidDPoPProof = "invalid_dpop_proof"

// defaultDPoPAlgs are the proof algorithms of a provider without a Binding entry.
var defaultDPoPAlgs = jose.DefaultAlgorithms()

// routeBinding is what a route's Checks need of the bindings, computed once.
type routeBinding struct {
	binds     bool   // the route or one of its providers requires a binding
	advertise bool   // ... requires dpop or any: every 401 of the route offers DPoP
	dpopOnly  bool   // the route (or every provider) requires dpop: no Bearer challenge
	dpopAlgs  string // the algs of its DPoP challenge: its providers' allow-lists
}

func (r *compiledRoute) compileBinding(bindings map[string]Binding) {
	if r.Auth != AuthJWT {
		return
	}
	var algs []string
	allDPoP := len(r.Providers) > 0
	for _, q := range append([]string{r.RequireBinding}, providerRequires(r.Providers, bindings)...) {
		switch q {
		case BindingDPoP, BindingAny:
			r.binds, r.advertise = true, true
		case BindingMTLS:
			r.binds = true
		}
	}
	for _, name := range r.Providers {
		b, ok := bindings[name]
		as := b.Algorithms
		if !ok || as == nil {
			as = defaultDPoPAlgs
		}
		for _, alg := range as {
			if !slices.Contains(algs, alg) {
				algs = append(algs, alg)
			}
		}
		allDPoP = allDPoP && b.Require == BindingDPoP
	}
	r.dpopOnly = r.RequireBinding == BindingDPoP || allDPoP
	r.dpopAlgs = strings.Join(algs, " ")
}

func providerRequires(names []string, bindings map[string]Binding) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, bindings[n].Require)
	}
	return out
}

// bind checks a verified token's binding and the route's and its provider's require_binding
// (docs/decisions.md#bound-tokens): a token with cnf is accepted only with proof of possession
// of what cnf names, the certificate (RFC 8705 §3) and the DPoP key (RFC 9449 §7.1), and the
// DPoP scheme only with a DPoP-bound token. It writes the denial into d and reports false when
// one fails.
func (a *Authorizer) bind(ctx context.Context, r *compiledRoute, req *Request, token string, usedDPoP bool, p *verify.Principal, d *Decision) bool {
	b := a.deps.Bindings[p.Provider]
	cnf := p.Cnf
	var dpop, mtls bool // proven
	switch {
	case cnf != nil && cnf.JKT == "" && cnf.X5T == "":
		// RFC 7800 §3.1: a confirmation method the recipient does not understand cannot be
		// satisfied; accepting the token as a bearer token would drop its binding.
		return a.denyBinding(r, d, usedDPoP, errInvalidToken, "the token is bound in a way that is not supported", "cnf_unsupported")
	case usedDPoP && (cnf == nil || cnf.JKT == ""):
		return a.denyBinding(r, d, usedDPoP, errInvalidToken, "the token is not bound to a DPoP key", "dpop_unbound_token")
	}
	if cnf != nil && cnf.X5T != "" {
		if reason, desc := checkCertificate(req.ClientCert, cnf.X5T); reason != "" {
			return a.denyBinding(r, d, usedDPoP, errInvalidToken, desc, reason)
		}
		mtls = true
	}
	if cnf != nil && cnf.JKT != "" {
		if !usedDPoP {
			// RFC 9449 §7.2: a DPoP-bound token presented as a bearer token is refused.
			return a.denyBinding(r, d, usedDPoP, errInvalidToken, "the token is bound to a DPoP key: send it with the DPoP scheme", "dpop_bearer_scheme")
		}
		if code, desc, reason := a.checkProof(ctx, req, token, p.TokenSum, cnf.JKT, b); code != "" {
			return a.denyBinding(r, d, usedDPoP, code, desc, reason)
		}
		dpop = true
	}
	if !satisfies(r.RequireBinding, dpop, mtls) || !satisfies(b.Require, dpop, mtls) {
		return a.denyBinding(r, d, usedDPoP, errInvalidToken, "the token is not sender-constrained as this route requires", "binding_required")
	}
	return true
}

// satisfies reports whether the proven bindings meet a require_binding value.
func satisfies(require string, dpop, mtls bool) bool {
	switch require {
	case BindingDPoP:
		return dpop
	case BindingMTLS:
		return mtls
	case BindingAny:
		return dpop || mtls
	}
	return true
}

// checkProof checks the request's one DPoP proof for token, whose SHA-256 is sum (RFC 9449 §4.3,
// §7.1): code is "" when it is good, else the error code with a fixed description and the
// refusal's reason.
func (a *Authorizer) checkProof(ctx context.Context, req *Request, token string, sum [sha256.Size]byte, jkt string, b Binding) (code, desc, reason string) {
	proof, n := singleDPoP(req.DPoP)
	switch {
	case n == 0:
		return errInvalidDPoPProof, "a DPoP proof is required", "dpop_missing"
	case n > 1:
		return errInvalidDPoPProof, "more than one DPoP proof was sent", "dpop_multiple"
	}
	algs := b.Algorithms
	if algs == nil {
		algs = defaultDPoPAlgs
	}
	now := a.deps.Now()
	window := dpopWindow + b.ClockSkew
	// JKT: the proof's key is compared with the token's before its signature is verified.
	pr, err := jose.VerifyDPoPProof(proof, jose.DPoPParams{Method: req.Method, URL: requestURL(req),
		AccessToken: token, AccessTokenSum: sum, Algorithms: algs, Now: now, Window: window, JKT: jkt})
	if err != nil {
		check := jose.DPoPCheckMalformed
		if de := (*jose.DPoPError)(nil); errors.As(err, &de) {
			check = de.Check
		}
		if check == jose.DPoPCheckJKT {
			// RFC 9449 §7.1: the key is the token's problem, not the proof's.
			return errInvalidToken, "the DPoP proof's key is not the one the token is bound to", "dpop_jkt_mismatch"
		}
		return errInvalidDPoPProof, "the DPoP proof is invalid (" + check + ")", "dpop_" + check
	}
	// Last, so a proof failing another check does not use up its jti. It is remembered until
	// its iat leaves the window: after that the iat check refuses it anyway (RFC 9449 §11.1).
	seen, err := a.deps.Replay.Seen(ctx, replay.Key("", pr.ID), now, pr.IssuedAt.Add(window))
	switch {
	case err != nil:
		// Fail closed: accepting it would mean forgetting a live jti (RFC 9449 §11.1).
		return errInvalidDPoPProof, "the DPoP proof cannot be checked for replay now", "dpop_replay_full"
	case seen:
		return errInvalidDPoPProof, "the DPoP proof was already used", "dpop_replay"
	}
	return "", "", ""
}

// requestURL is the request's URL for htu: scheme, authority and path, without query
// (RFC 9449 §4.3 step 9); jose.NormalizeHTU normalises it.
func requestURL(req *Request) string {
	scheme := strings.ToLower(req.Scheme)
	if scheme == "" {
		scheme = "https" // a gateway that says nothing: DPoP is meant for TLS (RFC 9449 §11)
	}
	path := req.Path
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	return scheme + "://" + req.Authority + path
}

// pemBoundaries undoes an encoder that writes a space as '+': that changes only the PEM boundary
// lines (base64 holds '+' but no space), and path unescaping keeps '+'. Built once: a Replacer
// is safe for concurrent use and builds its tables on first use.
var pemBoundaries = strings.NewReplacer("BEGIN+CERTIFICATE", "BEGIN CERTIFICATE", "END+CERTIFICATE", "END CERTIFICATE")

// checkCertificate compares the client certificate (URL-encoded PEM) with a token's
// cnf.x5t#S256 (RFC 8705 §3.1); reason is "" when it matches.
func checkCertificate(escaped, want string) (reason, desc string) {
	if escaped == "" {
		return "mtls_no_certificate", "the token is bound to a client certificate and none was presented"
	}
	text, err := url.PathUnescape(escaped)
	if err != nil {
		return "mtls_bad_certificate", "the client certificate does not parse"
	}
	text = pemBoundaries.Replace(text)
	got, err := jose.CertificateThumbprint(text)
	if err != nil {
		return "mtls_bad_certificate", "the client certificate does not parse"
	}
	if got != want {
		return "mtls_mismatch", "the client certificate is not the one the token is bound to"
	}
	return "", ""
}

// denyBinding writes a refused binding into d: 401 with code (invalid_token or
// invalid_dpop_proof), counted by reason, whose log reason names the failed check.
//
//go:noinline
func (a *Authorizer) denyBinding(r *compiledRoute, d *Decision, usedDPoP bool, code, desc, reason string) bool {
	hash := d.TokenHash
	*d = Decision{Status: http.StatusUnauthorized, Error: code, Description: desc, Reason: "binding: " + reason, TokenHash: hash}
	a.deps.Metrics.BindingRefusal(reason)
	if r.advertise || usedDPoP || strings.HasPrefix(reason, "dpop_") {
		setChallenge(r, d, usedDPoP || code == errInvalidDPoPProof)
	} else { // a certificate binding on a route that does not offer DPoP
		d.WWWAuthenticate = schemeBearer.challenge(`error="`+code+`"`, `error_description="`+quoteSafe(desc)+`"`)
	}
	return false
}

// challengeDPoP gives a 401 of a jwt route the DPoP challenge when the route offers DPoP or the
// request used it (RFC 9449 §7.1).
func (a *Authorizer) challengeDPoP(r *compiledRoute, d *Decision, usedDPoP bool) {
	if d.Status == http.StatusUnauthorized && r.Auth == AuthJWT && (r.advertise || usedDPoP) {
		setChallenge(r, d, usedDPoP)
	}
}

// setChallenge writes a 401's WWW-Authenticate: the DPoP challenge with algs (RFC 9449 §7.1),
// then, unless the route takes DPoP only, the Bearer challenge (RFC 6750 §3). The error goes on
// the challenge of the scheme the request used (onDPoP), or of DPoP on a DPoP-only route.
func setChallenge(r *compiledRoute, d *Decision, onDPoP bool) {
	var attrs string
	if d.Error == errInvalidToken || d.Error == errInvalidDPoPProof {
		attrs = `, error="` + d.Error + `", error_description="` + quoteSafe(d.Description) + `"`
	}
	dpop := "DPoP " + realm + `, algs="` + r.dpopAlgs + `"`
	if r.dpopOnly {
		d.WWWAuthenticate = dpop + attrs
		return
	}
	bearer := "Bearer " + realm
	if onDPoP {
		dpop += attrs
	} else {
		bearer += attrs
	}
	d.WWWAuthenticate = dpop + ", " + bearer
}
