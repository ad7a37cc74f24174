// Command tgprofd is `tokengate serve` with a net/http/pprof listener, for the load harness's
// --profile-dir (make bench-load, issue 11): the profile of the real server, gRPC transport
// included, under the harness's load. It is a measuring tool, never a deployment: the pprof
// listener is loopback only and the binary is built only by the harness.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	"github.com/tokengate/tokengate/internal/app"
	"github.com/tokengate/tokengate/internal/config"
)

func main() {
	path := flag.String("config", "", "configuration file (YAML)")
	pprofAddr := flag.String("pprof-addr", "127.0.0.1:0", "loopback address of the pprof listener")
	flag.Parse()
	if err := run(*path, *pprofAddr); err != nil {
		fmt.Fprintln(os.Stderr, "tgprofd:", err)
		os.Exit(1)
	}
}

func run(path, pprofAddr string) error {
	host, _, err := net.SplitHostPort(pprofAddr)
	if err != nil {
		return fmt.Errorf("--pprof-addr: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--pprof-addr: %q is not a loopback address", pprofAddr)
	}
	cfg, err := config.Load(path, os.LookupEnv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	lis, err := net.Listen("tcp", pprofAddr)
	if err != nil {
		return fmt.Errorf("pprof listener: %w", err)
	}
	// The harness reads the pprof address from the first line.
	fmt.Println(lis.Addr().String())
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go func() { _ = http.Serve(lis, mux) }()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, err := app.New(ctx, app.Options{
		ConfigPath: path, Config: cfg,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	return a.Run(ctx)
}
