package extauthz

import (
	"encoding/base64"
	"net/url"
	"strings"
)

// credential is what the caller presented in its Authorization header.
type credential struct {
	scheme string // lower-case: "bearer", "basic", "dpop" (RFC 9449 §7.1), or another scheme
	value  string // the token68 / credentials after the scheme
}

// credentialError is a syntactically unusable Authorization header: RFC 6750 §3.1 answers it
// with 400 invalid_request.
type credentialError string

func (e credentialError) Error() string { return string(e) }

// parseAuthorization reads one Authorization header value. Envoy joins repeated headers with
// commas, so a comma means the caller sent two credentials, which is refused rather than
// guessing which one counts (RFC 6750 §3.1 "multiple methods"). present is false when there is
// no credential at all.
func parseAuthorization(values []string) (c credential, present bool, err error) {
	v, n := "", 0
	for _, h := range values {
		if t := strings.TrimSpace(h); t != "" {
			v, n = t, n+1
		}
	}
	switch n {
	case 0:
		return credential{}, false, nil
	case 1:
	default:
		return credential{}, true, credentialError("more than one credential was sent")
	}
	if strings.IndexByte(v, ',') >= 0 {
		return credential{}, true, credentialError("more than one credential was sent")
	}
	name, rest, _ := strings.Cut(v, " ")
	c = credential{scheme: lowerScheme(name), value: strings.TrimLeft(rest, " ")}
	if c.value == "" {
		return c, true, credentialError("the credential is empty")
	}
	// IndexByte rather than ContainsAny: it is vectorized, and tokens run to kilobytes.
	if strings.IndexByte(c.value, ' ') >= 0 || strings.IndexByte(c.value, '\t') >= 0 {
		return c, true, credentialError("the credential is malformed")
	}
	return c, true, nil
}

// lowerScheme is the scheme in lower case (auth-scheme is case-insensitive, RFC 9110 §11.1),
// without a copy for the schemes tokengate takes.
func lowerScheme(name string) string {
	for _, s := range [...]string{"bearer", "basic", "dpop"} {
		if asciiFold(name, s) {
			return s
		}
	}
	return strings.ToLower(name)
}

// asciiFold compares a and b in ASCII letter case only ("baſic" with a long s is not "basic";
// strings.EqualFold says it is, by Unicode simple folding).
func asciiFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

// singleDPoP returns the one DPoP proof of a request (RFC 9449 §4.3 step 1: "not more than one
// DPoP HTTP request header field"). Envoy joins repeated headers with commas, and a proof (three
// base64url segments) never holds one, so a comma also means two headers. n is how many values
// were sent.
func singleDPoP(values []string) (proof string, n int) {
	for _, v := range values {
		if t := strings.TrimSpace(v); t != "" {
			proof, n = t, n+1
		}
	}
	if n == 1 && strings.IndexByte(proof, ',') >= 0 {
		n = 2
	}
	return proof, n
}

// tokenInQuery reports whether the URI carries an access token (RFC 6750 §2.3). tokengate does
// not accept it: a token in a URI ends up in access logs and Referer headers, and a second
// credential beside the header would be ambiguous.
func tokenInQuery(path string) bool {
	_, query, ok := strings.Cut(path, "?")
	if !ok || !strings.Contains(query, "access_token") {
		return false
	}
	values, err := url.ParseQuery(query)
	if err != nil {
		return true // a malformed query that mentions access_token is refused, not guessed at
	}
	_, has := values["access_token"]
	return has
}

// basicCredentials decodes RFC 7617 Basic credentials. As in RFC 6749 §2.3.1 the client id and
// secret are form-urlencoded inside the Basic value, so both are unescaped.
func basicCredentials(value string) (id, secret string, err error) {
	raw, decErr := base64.StdEncoding.DecodeString(value)
	if decErr != nil {
		return "", "", credentialError("the Basic credentials are malformed")
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || user == "" {
		return "", "", credentialError("the Basic credentials are malformed")
	}
	if id, err = url.QueryUnescape(user); err != nil {
		return "", "", credentialError("the Basic credentials are malformed")
	}
	if secret, err = url.QueryUnescape(pass); err != nil {
		return "", "", credentialError("the Basic credentials are malformed")
	}
	return id, secret, nil
}
