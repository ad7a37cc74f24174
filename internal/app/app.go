// Package app runs tokengate: it builds every component from a configuration, owns the gRPC and
// HTTP servers, reloads the configuration on SIGHUP without dropping requests, and drains both
// servers on SIGTERM/SIGINT. It is the only place that knows how the pieces fit; cmd parses
// flags and calls it.
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
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/tokengate/tokengate/extauthz"
	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/metrics"
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
	engine  *extauthz.Engine
	tokens  *upstream.Cache
	store   *redisstore.Store // nil without cache.redis

	mu sync.Mutex // serializes reloads
	// started is the configuration the process started with: listeners and caches are built
	// once, so a reload that changes them is told to restart.
	started *config.Config
	state   atomic.Pointer[state]

	grpcLis, httpLis net.Listener
	grpcSrv          *grpc.Server
	httpSrv          *http.Server
	health           *health.Server
}

// New loads the configuration, builds every component and binds both listeners, so that the
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
	if opts.HTTPClient == nil {
		a.opts.HTTPClient = newHTTPClient()
	}
	tokens, err := a.newTokenCache(cfg)
	if err != nil {
		return nil, err
	}
	a.tokens = tokens
	st, err := a.build(ctx, cfg, nil)
	if err != nil {
		a.tokens.Close()
		return nil, err
	}
	a.state.Store(st)
	a.engine = extauthz.NewEngine(st.authorizer)

	grpcAddr := firstNonEmpty(opts.GRPCAddr, cfg.Server.GRPCAddr)
	httpAddr := firstNonEmpty(opts.HTTPAddr, cfg.Server.HTTPAddr)
	if a.grpcLis, err = net.Listen("tcp", grpcAddr); err != nil {
		a.close()
		return nil, fmt.Errorf("listen grpc_addr %s: %w", grpcAddr, err)
	}
	if a.httpLis, err = net.Listen("tcp", httpAddr); err != nil {
		a.close()
		return nil, fmt.Errorf("listen http_addr %s: %w", httpAddr, err)
	}
	a.grpcSrv = grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(4<<20),
	)
	authv3.RegisterAuthorizationServer(a.grpcSrv, extauthz.NewCheckServer(a.engine, a.logger))
	a.health = health.NewServer()
	healthpb.RegisterHealthServer(a.grpcSrv, a.health)
	reflection.Register(a.grpcSrv)
	a.httpSrv = &http.Server{
		Handler:           a.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
	a.updateHealth()
	return a, nil
}

// GRPCAddr is the bound ext_authz gRPC address.
func (a *App) GRPCAddr() string { return a.grpcLis.Addr().String() }

// HTTPAddr is the bound HTTP address.
func (a *App) HTTPAddr() string { return a.httpLis.Addr().String() }

// Run serves until ctx is done, then stops accepting, drains in-flight requests (bounded by
// DrainGrace) and returns nil. With Options.Signals it reloads on SIGHUP.
func (a *App) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- a.grpcSrv.Serve(a.grpcLis) }()
	go func() {
		if err := a.httpSrv.Serve(a.httpLis); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			return
		}
		errc <- nil
	}()
	var hup chan os.Signal
	if a.opts.Signals {
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	a.logger.Info("tokengate serving", slog.String("grpc_addr", a.GRPCAddr()), slog.String("http_addr", a.HTTPAddr()))
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

// shutdown stops accepting and drains: gRPC GracefulStop and HTTP Shutdown, both bounded.
func (a *App) shutdown() {
	a.health.Shutdown() // NOT_SERVING first, so load balancers stop sending
	drain, cancel := context.WithTimeout(context.Background(), a.opts.DrainGrace)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
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
	go func() {
		defer wg.Done()
		if err := a.httpSrv.Shutdown(drain); err != nil {
			_ = a.httpSrv.Close()
		}
	}()
	wg.Wait()
	a.close()
	a.logger.Info("tokengate stopped")
}

func (a *App) close() {
	if st := a.state.Load(); st != nil {
		st.close()
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
	if a.httpLis != nil {
		_ = a.httpLis.Close()
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
	if cfg.Server.GRPCAddr != a.started.Server.GRPCAddr || cfg.Server.HTTPAddr != a.started.Server.HTTPAddr ||
		!reflect.DeepEqual(cfg.Cache, a.started.Cache) {
		a.logger.Warn("server addresses and cache settings take effect at the next restart; the rest of the new configuration applies now")
	}
	old := a.state.Load()
	st, err := a.build(ctx, cfg, old)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	a.state.Store(st)
	a.engine.Swap(st.authorizer)
	a.updateHealth()
	old.close()
	a.logger.Info("configuration reloaded", slog.Int("routes", len(cfg.Routes)), slog.Int("providers", len(cfg.Providers)))
	return nil
}

// Missing lists what keeps the server from being ready (SPEC section 6, /readyz).
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

// routes is the HTTP surface of SPEC section 6.
func (a *App) routes() http.Handler {
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
	fa := extauthz.NewForwardAuth(a.engine, a.logger, extauthz.ForwardAuthOptions{Headers: a.started.Server.ForwardAuthHeaders, TrustedProxies: a.started.Server.TrustedProxyPrefixes})
	mux.Handle(extauthz.ForwardAuthPath, fa)
	mux.Handle(extauthz.ForwardAuthPath+"/", fa)
	mux.Handle("GET /metrics", a.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if missing := a.Missing(); len(missing) > 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "missing": missing})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
	})
	return mux
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
