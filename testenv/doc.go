// Package testenv is the in-process rig that end-to-end tests and `tokengate demo` run on:
// a fake external IdP (JWKS, discovery and a client-credentials token endpoint that counts
// requests and fails on demand), an echo upstream that reports the headers it received, and a
// stand-in gateway that calls Check exactly as Envoy's ext_authz filter does.
//
// Every server listens on 127.0.0.1 port 0. Nothing here is a mock of tokengate: tests drive the
// real servers through real sockets.
package testenv
