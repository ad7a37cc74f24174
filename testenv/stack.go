package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/tokengate/tokengate/internal/app"
)

// Demo credentials. They exist only inside the rig (the demo and the tests) and are printed by
// `tokengate demo`: they are not secrets.
const (
	DemoClientID      = "demo-client"
	DemoClientSecret  = "demo-secret-not-for-production"
	GatewayClientID   = "tokengate-gateway"
	GatewaySecret     = "gateway-secret-not-for-production"
	PartnerClientID   = "partner-app"
	PartnerSecret     = "partner-secret-not-for-production"
	DemoIssuerURL     = "https://tokengate.demo.local"
	DemoMintAudience  = "echo-upstream"
	DemoFetchAudience = "https://api.partner.example"
	// ServiceClientID is the demo's service that exchanges a caller's token at tokengate's own
	// token endpoint (RFC 8693) for one meant for ServiceAudience.
	ServiceClientID = "orders-service"
	ServiceSecret   = "service-secret-not-for-production"
	ServiceAudience = "inventory-api"
)

// The demo's routes, as the stand-in gateway names them (Envoy's context_extensions) and the
// path prefixes that select them. Each shows one upstream mode.
var DemoRoutes = []GatewayRoute{
	{Prefix: "/healthz", Disabled: true},
	{Prefix: "/mint/", Name: "mint"},
	{Prefix: "/fetch/", Name: "fetch"},
	{Prefix: "/exchange/", Name: "exchange"},
	{Prefix: "/passthrough/", Name: "passthrough"},
	{Prefix: "/remove/", Name: "remove"},
	{Prefix: "/public/", Name: "public"},
	{Prefix: "/admin/", Name: "admin"},
	{Prefix: "/opaque/", Name: "opaque"},
	{Prefix: "/delegate/", Name: "delegate"},
}

// DemoOpaqueAudience is the audience of the fake IdP's opaque tokens the demo accepts.
const DemoOpaqueAudience = "api://gateway"

// DemoExchangeAudience is the audience the delegate route asks the fake IdP's RFC 8693
// token-exchange grant for: the echo upstream, which then gets a token that names the user.
const DemoExchangeAudience = "echo-upstream"

// demoConfig is the configuration the rig runs. {{.IdP}} is the fake external IdP.
const demoConfig = `# Written by tokengate's test rig (testenv). Demo credentials only.
server:
  grpc_addr: "{{.GRPCAddr}}"
  http_addr: "{{.HTTPAddr}}"
  # forward-auth /authz hands out upstream credentials: it listens apart from the public token
  # endpoint, where only gateways reach it (docs/deployment.md#deployment-security).
  authz_addr: "{{.AuthzAddr}}"
issuer:
  issuer_url: "{{.IssuerURL}}"
  token_ttl: 1h
  signing_keys:
    - kid: demo-es256
      alg: ES256
      generate: true
  clients:
    - client_id: {{.DemoClientID}}
      client_secret: "${TOKENGATE_DEMO_SECRET}"
      scopes: [echo.read, echo.write, admin]
      default_scopes: [echo.read]
      # Not the mint routes' audience: a token minted for the upstream must not be one a client
      # can obtain (RFC 8725 §3.9; docs/configuration.md#refused-as-unsafe-and-warnings).
      audiences: [tokengate-gateway]
      claims: {tenant: demo}
    # A service that received a caller's token exchanges it here for one meant for the next
    # service (RFC 8693); the new token still names the caller, with act naming this client.
    - client_id: {{.ServiceClientID}}
      client_secret: "${TOKENGATE_SERVICE_SECRET}"
      grant_types: [token_exchange]
      scopes: [echo.read]
      audiences: [{{.ServiceAudience}}]
  token_exchange:
    subject_providers: [self, idp]
providers:
  - name: self
    issuer: self
  - name: idp
    issuer: "{{.IdP}}"
    jwks_uri: "{{.IdP}}/.well-known/jwks.json"
    audiences: [api://gateway]
  # The same IdP's opaque tokens, judged by its RFC 7662 introspection endpoint.
  - name: idp-opaque
    introspection:
      url: "{{.IdP}}/oauth/introspect"
      client_id: {{.GatewayClientID}}
      client_secret: "${TOKENGATE_GATEWAY_SECRET}"
    issuer: "{{.IdP}}"
    audiences: [api://gateway]
routes:
  - name: mint
    match: {path_prefix: /mint/}
    authenticate: {jwt: {providers: [self, idp], scopes: [echo.read]}}
    upstream: {mint: {audience: {{.MintAudience}}, scopes: [echo.read], ttl: 5m}}
    forward_claims: {x-subject: sub, x-scopes: scope, x-tenant: tenant}
  - name: fetch
    match: {path_prefix: /fetch/}
    authenticate: {jwt: {providers: [self, idp]}}
    upstream:
      fetch:
        token_url: "{{.IdP}}/oauth/token"
        client_id: {{.GatewayClientID}}
        client_secret: "${TOKENGATE_GATEWAY_SECRET}"
        scopes: [orders.read]
        audience: "{{.FetchAudience}}"
        auth_style: basic
  - name: exchange
    match: {path_prefix: /exchange/}
    authenticate:
      client_credentials:
        token_url: "{{.IdP}}/oauth/token"
        scopes: [orders.read]
    upstream: {exchanged: {}}
  - name: passthrough
    match: {path_prefix: /passthrough/}
    authenticate: {jwt: {providers: [self, idp]}}
    upstream: {passthrough: {}}
  - name: remove
    match: {path_prefix: /remove/}
    authenticate: {jwt: {providers: [self, idp]}}
    upstream: {remove: {}}
    forward_claims: {x-subject: sub}
  - name: public
    match: {path_prefix: /public/}
    authenticate: {none: {}}
    upstream: {remove: {}}
  - name: admin
    match: {path_prefix: /admin/}
    authenticate: {jwt: {providers: [self], scopes: [admin], claims: {tenant: demo}}}
    upstream: {mint: {audience: {{.MintAudience}}, scopes: [admin]}}
  # The phantom-token pattern: an opaque token outside, a JWT tokengate signs inside.
  - name: opaque
    match: {path_prefix: /opaque/}
    authenticate: {jwt: {providers: [idp, idp-opaque], scopes: [echo.read]}}
    upstream: {mint: {audience: {{.MintAudience}}, scopes: [echo.read], ttl: 5m}}
    forward_claims: {x-subject: sub}
  # Delegation (RFC 8693): the user's token of the IdP, exchanged at the IdP for a token meant
  # for the echo upstream that still names the user; tokengate authenticates as its own client.
  - name: delegate
    match: {path_prefix: /delegate/}
    authenticate: {jwt: {providers: [idp], scopes: [echo.read]}}
    upstream:
      token_exchange:
        token_url: "{{.IdP}}/oauth/token"
        client_id: {{.GatewayClientID}}
        client_secret: "${TOKENGATE_GATEWAY_SECRET}"
        audience: {{.ExchangeAudience}}
        scopes: [echo.read]
    forward_claims: {x-subject: sub}
`

// StackOptions configure a Stack; empty addresses listen on 127.0.0.1:0.
type StackOptions struct {
	GRPCAddr, HTTPAddr, AuthzAddr, GatewayAddr string
	Logger                                     *slog.Logger
	Dir                                        string // where the configuration file is written; default a temp dir
}

// Stack is the whole rig: a fake IdP, an echo upstream, tokengate itself (the real servers,
// from internal/app) and a stand-in gateway in front of the echo upstream.
type Stack struct {
	IdP        *IdP
	Echo       *Echo
	App        *app.App
	Gateway    *Gateway
	ConfigPath string
	// OpaqueToken is an opaque access token of the fake IdP (sub demo-user, scope echo.read,
	// valid one hour) that the demo's opaque route accepts by introspection.
	OpaqueToken string
	// UserToken is a JWT of the fake IdP (sub demo-user, aud api://gateway, scope echo.read,
	// valid one hour): a user's token, which the demo's delegate route exchanges at the IdP.
	UserToken string

	authzAddr string // the configured server.authz_addr
	cancel    context.CancelFunc
	done      chan error
	cleanup   []func()
}

// StartStack starts the rig and returns once tokengate is ready. When a part cannot start (a
// busy address) what did start is stopped and the error names the address.
func StartStack(ctx context.Context, opts StackOptions) (*Stack, error) {
	s := &Stack{}
	if err := s.start(ctx, opts); err != nil {
		_ = s.Close() // s holds what did start
		return nil, err
	}
	return s, nil
}

func (s *Stack) start(ctx context.Context, opts StackOptions) (err error) {
	if s.IdP, err = NewIdP("", map[string]string{GatewayClientID: GatewaySecret, PartnerClientID: PartnerSecret}); err != nil {
		return fmt.Errorf("idp: %w", err)
	}
	s.cleanup = append(s.cleanup, s.IdP.Close)
	s.OpaqueToken = s.IdP.OpaqueToken(map[string]any{"sub": "demo-user", "scope": "echo.read", "aud": DemoOpaqueAudience})
	if s.UserToken, err = s.IdP.CallerToken(map[string]any{"sub": "demo-user", "scope": "echo.read", "aud": DemoOpaqueAudience}); err != nil {
		return fmt.Errorf("idp: %w", err)
	}
	if s.Echo, err = NewEcho(""); err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	s.cleanup = append(s.cleanup, s.Echo.Close)

	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "tokengate-rig-"); err != nil {
			return err
		}
		s.cleanup = append(s.cleanup, func() { os.RemoveAll(dir) })
	}
	s.ConfigPath = filepath.Join(dir, "tokengate.yaml")
	s.authzAddr = opts.AuthzAddr
	if err := s.WriteConfig(opts.GRPCAddr, opts.HTTPAddr, ""); err != nil {
		return err
	}
	env := func(k string) (string, bool) {
		switch k {
		case "TOKENGATE_DEMO_SECRET":
			return DemoClientSecret, true
		case "TOKENGATE_GATEWAY_SECRET":
			return GatewaySecret, true
		case "TOKENGATE_SERVICE_SECRET":
			return ServiceSecret, true
		}
		return os.LookupEnv(k)
	}
	s.App, err = app.New(ctx, app.Options{ConfigPath: s.ConfigPath, Env: env, Logger: opts.Logger})
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() { s.done <- s.App.Run(runCtx) }()
	readyCtx, readyCancel := context.WithTimeout(ctx, 10*time.Second)
	defer readyCancel()
	if err := s.App.WaitReady(readyCtx); err != nil {
		return err
	}
	s.Gateway, err = NewGateway(GatewayOptions{
		Addr: opts.GatewayAddr, CheckAddr: s.App.GRPCAddr(), UpstreamURL: s.Echo.URL(), Routes: DemoRoutes,
	})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

// WriteConfig (re)writes the rig's configuration file; extra YAML is appended (it may add
// routes only when the template ends inside `routes`). Tests use it before Reload.
func (s *Stack) WriteConfig(grpcAddr, httpAddr, extra string) error {
	if grpcAddr == "" {
		grpcAddr = "127.0.0.1:0"
	}
	if httpAddr == "" {
		httpAddr = "127.0.0.1:0"
	}
	authzAddr := s.authzAddr
	if authzAddr == "" {
		authzAddr = "127.0.0.1:0"
	}
	var buf bytes.Buffer
	t := template.Must(template.New("cfg").Parse(demoConfig))
	if err := t.Execute(&buf, map[string]string{
		"GRPCAddr": grpcAddr, "HTTPAddr": httpAddr, "AuthzAddr": authzAddr, "IssuerURL": DemoIssuerURL, "IdP": s.IdP.URL(),
		"DemoClientID": DemoClientID, "GatewayClientID": GatewayClientID,
		"MintAudience": DemoMintAudience, "FetchAudience": DemoFetchAudience,
		"ExchangeAudience": DemoExchangeAudience,
		"ServiceClientID":  ServiceClientID, "ServiceAudience": ServiceAudience,
	}); err != nil {
		return err
	}
	buf.WriteString(extra)
	return os.WriteFile(s.ConfigPath, buf.Bytes(), 0o600)
}

// AuthzURL is tokengate's forward-auth endpoint (on its own listener, server.authz_addr).
func (s *Stack) AuthzURL() string { return "http://" + s.App.AuthzAddr() + "/authz" }

// TokenURL is tokengate's own token endpoint.
func (s *Stack) TokenURL() string { return "http://" + s.App.HTTPAddr() + "/oauth2/token" }

// ClientToken gets a token from tokengate's token endpoint for the demo client.
func (s *Stack) ClientToken(ctx context.Context, scope string) (string, error) {
	return FetchToken(ctx, s.TokenURL(), DemoClientID, DemoClientSecret, scope)
}

// FetchToken runs a client-credentials grant (client_secret_basic) and returns access_token.
func FetchToken(ctx context.Context, tokenURL, id, secret, scope string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", fmt.Errorf("token endpoint answered %d: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || body.AccessToken == "" {
		return "", fmt.Errorf("token endpoint answered %d %s", resp.StatusCode, body.Error)
	}
	return body.AccessToken, nil
}

// Close stops everything the stack started, tokengate first (it drains).
func (s *Stack) Close() error {
	var err error
	if s.Gateway != nil {
		s.Gateway.Close()
	}
	if s.cancel != nil {
		s.cancel()
		select {
		case err = <-s.done:
		case <-time.After(20 * time.Second):
			err = errors.New("tokengate did not stop within 20s")
		}
	}
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		s.cleanup[i]()
	}
	return err
}
