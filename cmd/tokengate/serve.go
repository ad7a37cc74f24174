package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"

	"github.com/tokengate/tokengate/internal/app"
	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/upstream/redisstore"
)

// serverFlags are the flags serve and demo share; they override the configuration file.
type serverFlags struct {
	grpcAddr, httpAddr, logLevel, logFormat string
}

func (f *serverFlags) register(fs *pflag.FlagSet, grpcDefault, httpDefault string) {
	fs.StringVar(&f.grpcAddr, "grpc-addr", grpcDefault, "ext_authz gRPC listen address (overrides server.grpc_addr)")
	fs.StringVar(&f.httpAddr, "http-addr", httpDefault, "HTTP listen address (overrides server.http_addr)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
}

func (f *serverFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, usageErrorf("--log-level: %q is not one of debug, info, warn, error", f.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(f.logFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErrorf("--log-format: %q is not text or json", f.logFormat)
}

// cmdServe runs the servers until SIGTERM or SIGINT (drain, exit 0); SIGHUP reloads.
func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	path := fs.String("config", "", "configuration file (YAML)")
	var sf serverFlags
	sf.register(fs, "", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageErrorf("serve: --config is required")
	}
	logger, err := sf.logger(stderr)
	if err != nil {
		return err
	}
	cfg, err := config.Load(*path, os.LookupEnv)
	if err != nil {
		return configError(err, stderr)
	}
	// go-redis logs through a process-wide logger of its own; the process is ours, so its lines
	// go through slog too (with --log-format json every line stays a JSON object).
	redis.SetLogger(redisstore.LogAdapter{L: logger})
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, err := app.New(ctx, app.Options{
		ConfigPath: *path, Config: cfg, GRPCAddr: sf.grpcAddr, HTTPAddr: sf.httpAddr,
		Logger: logger, Signals: true,
	})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// cmdValidate prints every problem as `line N: field.path: message` (the line of the key, or of its
// nearest ancestor the file has), all at once in document order, and exits 2 when there is any;
// warnings (`warning: field.path: message`) leave a valid file valid, exit 0
// (docs/operations.md#commands).
func cmdValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", stderr)
	path := fs.String("config", "", "configuration file (YAML)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageErrorf("validate: --config is required")
	}
	cfg, err := config.Load(*path, os.LookupEnv)
	if err != nil {
		return configError(err, stdout)
	}
	if err := app.Check(cfg); err != nil {
		fmt.Fprintln(stdout, err)
		return silentUsage{}
	}
	// Warnings do not make the file invalid (exit 0), but every one is shown.
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "%s: valid\n", *path)
	return nil
}

// configError prints a configuration's problems one per line; a configuration that cannot be
// loaded at all (a missing file) is bad configuration too: exit status 2 either way.
func configError(err error, w io.Writer) error {
	var ce *config.Errors
	if errors.As(err, &ce) {
		fmt.Fprintln(w, ce.Error())
		return silentUsage{}
	}
	return usageError{err}
}
