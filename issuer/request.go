package issuer

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tokengate/tokengate/internal/authlimit"
)

// Parameters the endpoints read. Any other parameter is ignored (RFC 6749 §3.2), and may repeat:
// RFC 8707 `resource`, for one, is repeatable.
var (
	tokenParams = []string{"grant_type", "client_id", "client_secret", "client_assertion_type",
		"client_assertion", "scope", "audience",
		// RFC 8693 §2.1. `resource` may repeat (RFC 8707 §2): see repeatable.
		"subject_token", "subject_token_type", "requested_token_type", "resource", "actor_token",
		"actor_token_type"}
	introspectParams = []string{"token", "token_type_hint", "client_id", "client_secret",
		"client_assertion_type", "client_assertion"}
)

// readClientRequest is how the token and introspection endpoints begin: it marks the answer
// no-store, accepts only POST, reads the known parameters of the body (readParams) and finds the
// client credentials (clientCredentials), without checking them yet. Every failure is the
// *oauthError to answer.
func readClientRequest(w http.ResponseWriter, r *http.Request, known []string) (map[string]string, credentials, *oauthError) {
	noStore(w.Header())
	if r.Method != http.MethodPost {
		return nil, credentials{}, errMethod
	}
	p, oe := readParams(w, r, known)
	if oe != nil {
		return nil, credentials{}, oe
	}
	cr, oe := clientCredentials(r, p)
	if oe != nil {
		return nil, credentials{}, oe
	}
	return p, cr, nil
}

// readParams reads the body of a token or introspection request into the known parameters that
// have a non-empty value (RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if
// they were omitted"). It accepts application/x-www-form-urlencoded (RFC 6749 §4.4.2) and, as
// Otoroshi's clients send it, a JSON object whose known members are strings. A known parameter
// present twice is invalid_request (RFC 6749 §3.2); so is a duplicate member of the JSON object,
// known or not, since parsers disagree on which one wins.
func readParams(w http.ResponseWriter, r *http.Request, known []string) (map[string]string, *oauthError) {
	// RFC 6749 §2.3.1: credentials are not to be sent in the request URI; a URI ends up in logs.
	if r.URL.RawQuery != "" {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, errBadQuery
		}
		if q.Has("client_secret") || q.Has("client_id") {
			return nil, errQueryCredentials
		}
	}
	if r.ContentLength > MaxBodyBytes {
		return nil, errTooLarge
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, errTooLarge
		}
		return nil, errReadBody
	}
	cts := r.Header.Values("Content-Type")
	if len(cts) > 1 {
		return nil, errContentType
	}
	if len(cts) == 0 || strings.TrimSpace(cts[0]) == "" {
		if len(bytes.TrimSpace(data)) == 0 {
			return map[string]string{}, nil // e.g. `curl -X POST -u id:secret`: grant_type missing
		}
		return nil, errContentType
	}
	mt, _, err := mime.ParseMediaType(cts[0])
	if err != nil {
		return nil, errContentType
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		return parseForm(data, known)
	case "application/json":
		return parseJSON(data, known)
	default:
		return nil, errContentType
	}
}

// repeatable is the one known parameter that may repeat: RFC 8707 §2 `resource`. Its first value
// is kept, and repeatedResource marks that there were more, for the grant to judge (a
// client_credentials request ignores resource, as it always has; a token exchange issues a token
// for one target and refuses several).
const (
	repeatable       = "resource"
	repeatedResource = "\x00resource-repeated" // not a known parameter: never copied from a request
)

func parseForm(data []byte, known []string) (map[string]string, *oauthError) {
	vals, err := url.ParseQuery(string(data))
	if err != nil {
		return nil, errBadForm
	}
	out := make(map[string]string, len(known))
	for _, k := range known {
		vs := vals[k]
		if k == repeatable && len(vs) > 1 {
			out[repeatedResource] = "1"
			vs = vs[:1]
		}
		switch {
		case len(vs) > 1:
			return nil, errRepeated
		case len(vs) == 0 || vs[0] == "":
		case !utf8.ValidString(vs[0]):
			return nil, errBadUTF8
		default:
			out[k] = vs[0]
		}
	}
	return out, nil
}

func parseJSON(data []byte, known []string) (map[string]string, *oauthError) {
	// encoding/json silently turns invalid UTF-8 into U+FFFD; refuse it instead.
	if !utf8.Valid(data) {
		return nil, errBadUTF8
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errBadJSON
	}
	out := make(map[string]string, len(known))
	seen := make(map[string]struct{})
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errBadJSON
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errBadJSON
		}
		if _, dup := seen[name]; dup {
			return nil, errRepeated
		}
		seen[name] = struct{}{}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errBadJSON
		}
		if !slices.Contains(known, name) || string(raw) == "null" {
			continue
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, errBadJSON
		}
		if v != "" {
			out[name] = v
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errBadJSON
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errBadJSON // trailing data after the object
	}
	return out, nil
}

// credentials are the client's claimed identity, from Basic or from the body.
type credentials struct {
	id, secret string
	basic      bool // client_secret_basic
	// unsupported: an Authorization header of another scheme, an unsupported authentication
	// method (invalid_client, RFC 6749 §5.2).
	unsupported bool
	// assertion is a private_key_jwt client assertion (RFC 7523 §2.2); id is then the body's
	// client_id, which may be empty (the assertion's iss names the client).
	assertion string
}

// clientCredentials finds the client credentials of a request: client_secret_basic, with the id
// and the secret form-urlencoded inside Basic (RFC 6749 §2.3.1, so both are decoded), or
// client_secret_post. Using both is invalid_request (RFC 6749 §2.3: one method per request); the
// body may repeat the Basic client_id, which is no second authentication. Missing credentials are
// not an error here: authenticate answers them invalid_client, after the request's syntax has
// been judged.
func clientCredentials(r *http.Request, p map[string]string) (credentials, *oauthError) {
	auths := r.Header.Values("Authorization")
	if len(auths) > 1 {
		return credentials{}, errTwoAuthHeaders
	}
	_, hasType := p["client_assertion_type"]
	assertion, hasAssertion := p["client_assertion"]
	if hasType || hasAssertion {
		// RFC 7521 §4.2: both parameters, and no other client authentication (RFC 6749 §2.3).
		switch {
		case len(auths) > 0 || p["client_secret"] != "":
			return credentials{}, errTwoMethods
		case !hasType || !hasAssertion:
			return credentials{}, errAssertionParams
		case p["client_assertion_type"] != ClientAssertionType:
			return credentials{unsupported: true}, nil
		}
		return credentials{id: p["client_id"], assertion: assertion}, nil
	}
	if len(auths) == 0 {
		return credentials{id: p["client_id"], secret: p["client_secret"]}, nil
	}
	scheme, rest, _ := strings.Cut(strings.TrimLeft(auths[0], " "), " ")
	if !strings.EqualFold(scheme, "Basic") {
		if _, ok := p["client_secret"]; ok {
			return credentials{}, errTwoMethods
		}
		return credentials{unsupported: true}, nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.Trim(rest, " "))
	if err != nil {
		return credentials{}, errBadBasic
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return credentials{}, errBadBasic
	}
	id, err1 := url.QueryUnescape(user)
	secret, err2 := url.QueryUnescape(pass)
	if err1 != nil || err2 != nil || !utf8.ValidString(id) || !utf8.ValidString(secret) {
		return credentials{}, errBadBasic
	}
	if _, ok := p["client_secret"]; ok {
		return credentials{}, errTwoMethods
	}
	if bodyID, ok := p["client_id"]; ok && bodyID != id {
		return credentials{}, errTwoMethods
	}
	return credentials{id: id, secret: secret, basic: true}, nil
}

// authenticate checks the credentials against the registry, behind the shared failure limiter
// (RFC 6749 §2.3.1; docs/issuer.md#failure-limiter), keyed by the client id and the caller IP
// (authlimit.ClientIP: the socket peer, or X-Forwarded-For behind a trusted proxy). A limited key
// is refused before its secret is compared, identically for existing and unknown client ids.
// Unknown client and wrong secret take the same path (secretMatches with a nil client compares
// against the dummy digest), count the same failure and get the same answer.
func (i *Issuer) authenticate(r *http.Request, cr credentials) (*client, *oauthError) {
	if cr.assertion != "" && !cr.unsupported {
		return i.authenticateAssertion(r, cr)
	}
	if cr.unsupported || cr.id == "" || cr.secret == "" {
		return nil, errClient
	}
	return i.behindLimiter(r, cr.id, authMethod(cr), func() (*client, string, bool) {
		c := i.clients[cr.id]
		if c != nil && c.keys != nil {
			c = nil // a private_key_jwt client has no secret: the same answer as a wrong one
		}
		if !i.secretMatches(c, cr.secret) {
			return nil, "", false
		}
		return c, "", false
	})
}

// behindLimiter runs check, the authentication of client id by method, behind the shared
// failure limiter (RFC 6749 §2.3.1; docs/issuer.md#failure-limiter) keyed by id and the caller IP
// (authlimit.ClientIP): a limited key is refused with slow_down before check runs, so the answer
// says nothing about the client or its credentials. check returns the client, or nil, why (a
// log reason, "" for none) and whether the failure is our outage rather than the client's: an
// outage answers invalid_client without counting, every other failure counts one and answers
// invalid_client.
func (i *Issuer) behindLimiter(r *http.Request, id, method string, check func() (c *client, reason string, outage bool)) (*client, *oauthError) {
	ip := authlimit.ClientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), i.trusted)
	if wait, ok := i.limit.Allow(id, ip); !ok {
		i.log.Debug("issuer: client authentication refused: too many failures",
			"client_id", logSafe(id), "remote", ip.String())
		return nil, errSlowDown(wait)
	}
	c, reason, outage := check()
	if c != nil {
		return c, nil
	}
	if outage {
		i.log.Warn("issuer: client authentication refused, not counted as a failure", "client_id", logSafe(id),
			"method", method, "reason", reason, "remote", ip.String())
		return nil, errClient
	}
	i.limit.Fail(id, ip)
	attrs := []any{"client_id", logSafe(id), "method", method}
	if reason != "" {
		attrs = append(attrs, "reason", reason)
	}
	i.log.Info("issuer: client authentication failed", append(attrs, "remote", ip.String())...)
	return nil, errClient
}

func authMethod(cr credentials) string {
	if cr.assertion != "" {
		return "private_key_jwt"
	}
	if cr.basic {
		return "client_secret_basic"
	}
	return "client_secret_post"
}

// logSafe bounds an untrusted string before it goes into a log line.
func logSafe(s string) string {
	const limit = 64
	if len(s) > limit || !utf8.ValidString(s) {
		return strconv.QuoteToASCII(truncate(s, limit)) + "…"
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
