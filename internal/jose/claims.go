package jose

import "slices"

// reservedClaims are the registered JWT claims (RFC 7519 §4.1) and the JWT access-token claims
// of RFC 9068 §2.2 (client_id, scope) that the built-in issuer sets itself.
var reservedClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope"}

// ReservedClaims returns the claim names the issuer sets itself: a client's static claims
// (issuer.clients[].claims) may not use them, and extra claims given when minting never replace
// them.
func ReservedClaims() []string { return slices.Clone(reservedClaims) }

// IsReservedClaim reports whether name is one of ReservedClaims.
func IsReservedClaim(name string) bool { return slices.Contains(reservedClaims, name) }
