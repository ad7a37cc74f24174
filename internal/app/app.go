// Package app runs tokengate: it builds every component from a configuration, owns the gRPC and
// HTTP servers (and the optional authz_addr and metrics_addr listeners), reloads the
// configuration on SIGHUP without dropping requests, and drains every server on SIGTERM/SIGINT.
// It is the only place that knows how the pieces fit; cmd parses flags and calls it.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/tokengate/tokengate/extauthz"
	"github.com/tokengate/tokengate/internal/authlimit"
	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/httpx"
	"github.com/tokengate/tokengate/internal/introspect"
	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/replay"
	"github.com/tokengate/tokengate/internal/upstream"
	"github.com/tokengate/tokengate/internal/upstream/redisstore"
)

// Options configure an App. Either ConfigPath or Config is set.
type Options struct {
	ConfigPath string                      // read at start and on every reload
	Config     *config.Config              // an already loaded configuration (demo, tests); reload re-reads ConfigPath only
	Env        func(string) (string, bool) // ${NAME} lookups; default os.LookupEnv
	GRPCAddr   string                      // overrides server.grpc_addr
	HTTPAddr   string                      // overrides server.http_addr
	Logger     *slog.Logger                // default: discard
	HTTPClient *http.Client                // for JWKS and IdP calls; default: a hardened client
	Signals    bool                        // Run handles SIGHUP (reload); cmd handles SIGTERM/SIGINT via ctx
	DrainGrace time.Duration               // how long Run waits for in-flight requests at stop; default 15 s
	Now        func() time.Time            // clock for tests; default time.Now
}

// App is one running tokengate.
type App struct {
	opts    Options
	logger  *slog.Logger
	metrics *metrics.Metrics
	tokens  *upstream.Cache
	store   *redisstore.Store // nil without cache.redis
	// limiter counts failed client authentications (docs/issuer.md#failure-limiter). It lives as long
	// as the process, so a reload never forgives a guesser.
	limiter *authlimit.Limiter
	// replay remembers the jti of accepted DPoP proofs (RFC 9449 §11.1), for the life of the
	// process: a reload must not let a proof be replayed.
	replay *replay.Cache
	// assertions remembers the jti of client assertions the token endpoint accepted (RFC 7523
	// §3 item 7), for the life of the process and, with cache.redis, for the fleet.
	assertions *replay.Cache
	// gatewayCerts is gateway_tls's certificate material, re-read when its files change; nil
	// without gateway_tls.
	gatewayCerts *gatewayCerts

	mu sync.Mutex // serializes reloads
	// started is the configuration the process started with: listeners, gateway_tls, the
	// upstream-token cache and the Redis store are built once, so a reload that changes them is
	// told to restart.
	started *config.Config
	// state is the current configuration generation: the authorizer, the issuer and /authz's
	// handler, swapped by one store on reload (a decision that started on the old one finishes
	// on it). Nothing else holds a configuration.
	state atomic.Pointer[state]

	grpcLis, httpLis net.Listener
	grpcSrv          *grpc.Server
	httpSrv          *http.Server
	health           *health.Server
	// authzLis and metricsLis are nil unless server.authz_addr / server.metrics_addr move /authz and
	// /metrics off http_addr (docs/deployment.md#deployment-security).
	authzLis, metricsLis net.Listener
	authzSrv, metricsSrv *http.Server
}

// New loads the configuration, builds every component and binds every listener, so that the
// addresses are known (tests listen on port 0) before Run serves. Configuration problems are
// returned as *config.Errors.
func New(ctx context.Context, opts Options) (*App, error) {
	if opts.Env == nil {
		opts.Env = os.LookupEnv
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DrainGrace == 0 {
		opts.DrainGrace = 15 * time.Second
	}
	cfg := opts.Config
	if cfg == nil {
		var err error
		if cfg, err = config.Load(opts.ConfigPath, opts.Env); err != nil {
			return nil, err
		}
	}
	a := &App{opts: opts, logger: opts.Logger, metrics: metrics.New(), started: cfg}
	a.limiter = authlimit.New(authlimit.Options{Now: a.opts.Now})
	a.replay, a.assertions = replay.New(0), replay.New(0)
	if opts.HTTPClient == nil {
		a.opts.HTTPClient = httpx.NewClient()
	}
	tokens, err := a.newTokenCache(cfg)
	if err != nil {
		return nil, err
	}
	a.tokens = tokens
	if a.store != nil {
		// The fleet refuses a DPoP proof any replica accepted (RFC 9449 §11.1).
		a.replay.Share(a.store, replay.KindDPoP, "DPoP", a.logger)
		// And a client assertion any replica's token endpoint accepted (RFC 7523 §3 item 7).
		a.assertions.Share(a.store, replay.KindClientAssertion, "client assertion", a.logger)
		if !a.store.Sealed() && hasIntrospection(cfg) {
			a.logger.Warn("cache.redis has no encryption_key_file: introspection answers are not shared (an unsealed answer could be forged by whoever writes to Redis)")
		}
	}
	st, err := a.build(ctx, cfg, nil)
	if err != nil {
		a.close() // the token cache and the Redis store, as every later failure does
		return nil, err
	}
	a.state.Store(st)

	if g := cfg.Server.GatewayTLS; g != nil {
		if a.gatewayCerts, err = newGatewayCerts(g, opts.ConfigPath, opts.Now, a.logger); err != nil {
			a.close()
			return nil, fmt.Errorf("server.gateway_tls: %w", err)
		}
	}
	if err := a.listen(cfg); err != nil {
		a.close()
		return nil, err
	}
	grpcOpts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(4 << 20),
	}
	if a.gatewayCerts != nil {
		// gRPC over TLS needs ALPN "h2" (RFC 7540 section 3.3).
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(a.gatewayCerts.serverConfig([]string{"h2"}))))
	}
	a.grpcSrv = grpc.NewServer(grpcOpts...)
	authv3.RegisterAuthorizationServer(a.grpcSrv, extauthz.NewCheckServer(currentAuthorizer{a}, a.logger))
	a.health = health.NewServer()
	healthpb.RegisterHealthServer(a.grpcSrv, a.health)
	reflection.Register(a.grpcSrv)

	authzOnHTTP := a.authzLis == nil && !a.clientCertRequired()
	a.httpSrv = a.newHTTPServer(a.routes(authzOnHTTP, a.metricsLis == nil))
	if a.authzLis != nil {
		a.authzSrv = a.newHTTPServer(a.authzRoutes())
		if a.gatewayCerts != nil {
			a.authzSrv.TLSConfig = a.gatewayCerts.serverConfig([]string{"h2", "http/1.1"})
		}
	}
	if a.metricsLis != nil {
		a.metricsSrv = a.newHTTPServer(a.metricsRoutes())
	}
	a.warnExposure(cfg, authzOnHTTP)
	a.updateHealth()
	return a, nil
}

// listen binds every configured listener. A busy address is named in the error.
func (a *App) listen(cfg *config.Config) error {
	grpcAddr := firstNonEmpty(a.opts.GRPCAddr, cfg.Server.GRPCAddr)
	httpAddr := firstNonEmpty(a.opts.HTTPAddr, cfg.Server.HTTPAddr)
	var err error
	if a.grpcLis, err = net.Listen("tcp", grpcAddr); err != nil {
		return fmt.Errorf("listen grpc_addr %s: %w", grpcAddr, err)
	}
	if a.httpLis, err = net.Listen("tcp", httpAddr); err != nil {
		return fmt.Errorf("listen http_addr %s: %w", httpAddr, err)
	}
	if addr := cfg.Server.AuthzAddr; addr != "" {
		if a.authzLis, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("listen authz_addr %s: %w", addr, err)
		}
	}
	if addr := cfg.Server.MetricsAddr; addr != "" {
		if a.metricsLis, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("listen metrics_addr %s: %w", addr, err)
		}
	}
	return nil
}

// clientCertRequired reports whether gateway_tls demands gateway certificates (client_ca_file).
func (a *App) clientCertRequired() bool {
	return a.gatewayCerts != nil && a.gatewayCerts.caPath != ""
}

// warnExposure logs the one WARN line of docs/deployment.md#deployment-security when /authz, which
// hands out upstream credentials, shares http_addr with the token endpoint that issuer clients are
// meant to reach (and so, usually, everyone can). With client_ca_file and no authz_addr /authz is
// not served at all, which is said at INFO.
func (a *App) warnExposure(cfg *config.Config, authzOnHTTP bool) {
	if authzOnHTTP && cfg.Issuer != nil && len(cfg.Issuer.Clients) > 0 {
		a.logger.Warn("forward-auth /authz shares http_addr with the public token endpoint: whoever reaches it receives upstream credentials; set server.authz_addr or gateway_tls.client_ca_file")
	}
	if a.authzLis == nil && !authzOnHTTP {
		a.logger.Info("forward-auth /authz is not served: gateway_tls.client_ca_file protects grpc_addr and authz_addr only, and authz_addr is not set")
	}
}

func (a *App) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
}

// GRPCAddr is the bound ext_authz gRPC address.
func (a *App) GRPCAddr() string { return a.grpcLis.Addr().String() }

// HTTPAddr is the bound HTTP address.
func (a *App) HTTPAddr() string { return a.httpLis.Addr().String() }

// AuthzAddr is the bound forward-auth address; empty without server.authz_addr.
func (a *App) AuthzAddr() string {
	if a.authzLis == nil {
		return ""
	}
	return a.authzLis.Addr().String()
}

// MetricsAddr is the bound /metrics address; empty without server.metrics_addr.
func (a *App) MetricsAddr() string {
	if a.metricsLis == nil {
		return ""
	}
	return a.metricsLis.Addr().String()
}

// httpServers are the HTTP servers this App runs.
func (a *App) httpServers() []*http.Server {
	srvs := []*http.Server{a.httpSrv}
	if a.authzSrv != nil {
		srvs = append(srvs, a.authzSrv)
	}
	if a.metricsSrv != nil {
		srvs = append(srvs, a.metricsSrv)
	}
	return srvs
}

// Run serves until ctx is done, then stops accepting, drains in-flight requests (bounded by
// DrainGrace) and returns nil. With Options.Signals it reloads on SIGHUP.
func (a *App) Run(ctx context.Context) error {
	errc := make(chan error, 4)
	go func() { errc <- a.grpcSrv.Serve(a.grpcLis) }()
	serveHTTP := func(serve func() error) {
		go func() {
			if err := serve(); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
				return
			}
			errc <- nil
		}()
	}
	serveHTTP(func() error { return a.httpSrv.Serve(a.httpLis) })
	if a.authzSrv != nil {
		if a.authzSrv.TLSConfig != nil {
			// The certificate comes from TLSConfig (re-read as its files change), not from files
			// named here.
			serveHTTP(func() error { return a.authzSrv.ServeTLS(a.authzLis, "", "") })
		} else {
			serveHTTP(func() error { return a.authzSrv.Serve(a.authzLis) })
		}
	}
	if a.metricsSrv != nil {
		serveHTTP(func() error { return a.metricsSrv.Serve(a.metricsLis) })
	}
	var hup chan os.Signal
	if a.opts.Signals {
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	attrs := []any{slog.String("grpc_addr", a.GRPCAddr()), slog.String("http_addr", a.HTTPAddr())}
	if a.authzLis != nil {
		attrs = append(attrs, slog.String("authz_addr", a.AuthzAddr()))
	}
	if a.metricsLis != nil {
		attrs = append(attrs, slog.String("metrics_addr", a.MetricsAddr()))
	}
	attrs = append(attrs, slog.Bool("gateway_tls", a.gatewayCerts != nil), slog.Bool("gateway_client_certs", a.clientCertRequired()))
	a.logger.Info("tokengate serving", attrs...)
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			if err := a.Reload(context.WithoutCancel(ctx)); err != nil {
				a.logger.Error("reload refused; the previous configuration keeps serving", slog.String("error", err.Error()))
			}
		case err := <-errc:
			if err != nil {
				runErr = fmt.Errorf("server failed: %w", err)
				break loop
			}
		}
	}
	a.shutdown()
	return runErr
}

// shutdown stops accepting and drains: gRPC GracefulStop and every HTTP Shutdown, all bounded.
func (a *App) shutdown() {
	a.health.Shutdown() // NOT_SERVING first, so load balancers stop sending
	drain, cancel := context.WithTimeout(context.Background(), a.opts.DrainGrace)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		done := make(chan struct{})
		go func() { a.grpcSrv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-drain.Done():
			a.grpcSrv.Stop()
		}
	}()
	for _, srv := range a.httpServers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(drain); err != nil {
				_ = srv.Close()
			}
		}()
	}
	wg.Wait()
	a.close()
	a.logger.Info("tokengate stopped")
}

func (a *App) close() {
	if st := a.state.Load(); st != nil {
		st.close(nil)
	}
	if a.tokens != nil {
		a.tokens.Close()
	}
	if a.store != nil {
		_ = a.store.Close()
	}
	if a.grpcLis != nil {
		_ = a.grpcLis.Close()
	}
	for _, l := range []net.Listener{a.httpLis, a.authzLis, a.metricsLis} {
		if l != nil {
			_ = l.Close()
		}
	}
}

// Reload re-reads ConfigPath and swaps the new configuration in. A file that fails validation
// or building is refused and the old configuration keeps serving; in-flight decisions finish
// on the configuration they started with.
func (a *App) Reload(ctx context.Context) (err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer func() {
		result := "success"
		if err != nil {
			result = "error"
		}
		a.metrics.ConfigReload(result)
	}()
	if a.opts.ConfigPath == "" {
		return errors.New("reload: no configuration file")
	}
	cfg, err := config.Load(a.opts.ConfigPath, a.opts.Env)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if listenersChanged(&cfg.Server, &a.started.Server) || builtOnceChanged(&cfg.Cache, &a.started.Cache) {
		a.logger.Warn("server addresses, gateway_tls settings, cache.upstream_tokens and cache.redis take effect at the next restart (the gateway_tls certificate files are re-read as they change); the rest of the new configuration applies now")
	}
	old := a.state.Load()
	st, err := a.build(ctx, cfg, old)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	a.state.Store(st)
	a.updateHealth()
	old.close(st)
	a.logger.Info("configuration reloaded", slog.Int("routes", len(cfg.Routes)), slog.Int("providers", len(cfg.Providers)))
	return nil
}

// currentAuthorizer decides with the authorizer of the generation current at the time of the
// call.
type currentAuthorizer struct{ a *App }

func (c currentAuthorizer) Decide(ctx context.Context, req extauthz.Request) extauthz.Decision {
	return c.a.state.Load().authorizer.Decide(ctx, req)
}

// Missing lists what keeps the server from being ready (/readyz,
// docs/operations.md#health-metrics-and-logs).
func (a *App) Missing() []string {
	st := a.state.Load()
	if st == nil {
		return []string{"configuration not loaded"}
	}
	return st.missing()
}

func (a *App) updateHealth() {
	if a.health == nil {
		return
	}
	status := healthpb.HealthCheckResponse_SERVING
	a.health.SetServingStatus("", status)
	a.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, status)
}

// WaitReady blocks until every provider's keys have loaded once, or ctx ends.
func (a *App) WaitReady(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if len(a.Missing()) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %v: %w", a.Missing(), ctx.Err())
		case <-t.C:
		}
	}
}

// listenersChanged reports whether a reload changes what the listeners were built from.
func listenersChanged(now, started *config.Server) bool {
	return now.GRPCAddr != started.GRPCAddr || now.HTTPAddr != started.HTTPAddr ||
		now.AuthzAddr != started.AuthzAddr || now.MetricsAddr != started.MetricsAddr ||
		!reflect.DeepEqual(now.GatewayTLS, started.GatewayTLS)
}

// builtOnceChanged reports whether a reload changes the cache settings of what the process builds
// once: the upstream-token cache and its Redis store. The verified-token and introspection caches
// (cache.verified_tokens) belong to each generation and are rebuilt, empty, on every reload.
func builtOnceChanged(now, started *config.Cache) bool {
	return now.UpstreamTokens != started.UpstreamTokens || !reflect.DeepEqual(now.Redis, started.Redis)
}

// routes is the HTTP surface on http_addr (docs/issuer.md#endpoints,
// docs/operations.md#health-metrics-and-logs). /authz and /metrics are served here only when no
// listener of their own takes them (and /authz not at all when gateway_tls demands client
// certificates without authz_addr): moved away, they answer 404.
func (a *App) routes(authz, metrics bool) http.Handler {
	mux := http.NewServeMux()
	issuerHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := a.state.Load()
		if st.issuerMux == nil {
			http.NotFound(w, r)
			return
		}
		st.issuerMux.ServeHTTP(w, r)
	})
	mux.Handle("/oauth2/", issuerHandler)
	mux.Handle("/.well-known/", issuerHandler)

	if metrics {
		mux.Handle("GET /metrics", a.metrics.Handler())
	}
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if missing := a.Missing(); len(missing) > 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "missing": missing})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
	})
	if authz {
		return a.withForwardAuth(mux)
	}
	return mux
}

// authzRoutes is the authz_addr listener: forward-auth and /healthz (for the gateway's own
// health checks).
func (a *App) authzRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	return a.withForwardAuth(mux)
}

// metricsRoutes is the metrics_addr listener: /metrics and /healthz.
func (a *App) metricsRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.metrics.Handler())
	mux.HandleFunc("GET /healthz", healthz)
	return mux
}

// withForwardAuth serves /authz and /authz/* (docs/decisions.md#forward-auth-header-families) ahead
// of next. It is not a ServeMux pattern: the mux answers a path with dot segments or "//" with a
// 301 to its cleaned form before any handler runs, which would turn /authz/x/../admin into a
// redirect instead of the 403 the path's normal form calls for (Envoy's HTTP ext_authz in `request`
// mode).
func (a *App) withForwardAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p == extauthz.ForwardAuthPath || strings.HasPrefix(p, extauthz.ForwardAuthPath+"/") {
			a.state.Load().forwardAuth.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// introspectionShared is the fleet's Redis for introspection answers (introspect uses it only when
// values are sealed); nil without cache.redis, never a nil *Store in an interface.
func (a *App) introspectionShared() introspect.Shared {
	if a.store == nil {
		return nil
	}
	return a.store
}

func hasIntrospection(cfg *config.Config) bool {
	for _, p := range cfg.Providers {
		if p.Introspection != nil {
			return true
		}
	}
	return false
}
