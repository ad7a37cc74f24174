// Package extauthz decides authorization requests for Envoy's ext_authz filter and for
// forward-auth gateways (nginx auth_request, Traefik forwardAuth, Caddy forward_auth).
//
// One Authorizer holds a compiled configuration and is immutable; the application swaps one
// configuration generation atomically on reload, so in-flight decisions finish on the
// configuration they started with.
// The gRPC Check server (envoy.service.auth.v3.Authorization) and the HTTP forward-auth handler
// are thin transports over Authorizer.Decide: both give the same decision for the same request
// (docs/decisions.md).
//
// Check fails closed and never returns an RPC error for a request it could judge: Envoy treats
// an RPC error as a failure of the server (status_on_error), not as a decision.
package extauthz
