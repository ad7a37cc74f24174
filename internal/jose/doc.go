// Package jose is tokengate's only door to JOSE (github.com/lestrrat-go/jwx/v2):
// signing keys and compact JWS signing for the built-in issuer, JWK Set
// parsing, and strict verification of bearer JWTs. No jwx type appears in
// its API, so moving to jwx v3 touches this package only.
//
// Verification is split in two steps so that untrusted input is bounded and
// canonicalised before any library sees it:
//
//  1. Parse checks everything that needs no key (size, exactly two dots,
//     canonical unpadded base64url, UTF-8, strict JSON without duplicate
//     names or deep nesting, alg/kid/forbidden header parameters, claim
//     types), and exposes the untrusted iss for provider routing.
//  2. Unverified.Verify selects exactly one key by kid, binds the header alg
//     to the allow-list and to the key's alg (RFC 8725 §3.1), and lets
//     jws.Verify check the signature with that one key and alg.
//
// Claim values (exp, nbf, iat, iss, aud, typ policy) are the caller's job;
// Claims reports NumericDate presence separately from value so that exp:0 can
// be refused (jwx treats 0 as absent).
//
// The guards close the jwx v2 weaknesses listed in docs/security.md#jose-hardening;
// TestJWXPins records which of them the pinned jwx version still has.
package jose
