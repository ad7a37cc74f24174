package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/tokengate/tokengate/testenv"
)

// cmdDemo runs the whole product on loopback with no file and no Docker: tokengate (issuer,
// ext_authz gRPC, HTTP endpoints), a fake external IdP, an echo upstream and a stand-in gateway
// that calls Check the way Envoy does. It prints the commands to try and serves until
// SIGINT/SIGTERM.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	var sf serverFlags
	sf.register(fs, "127.0.0.1:9001", "127.0.0.1:8080")
	authzAddr := fs.String("authz-addr", "127.0.0.1:8081", "forward-auth /authz listen address (server.authz_addr)")
	gatewayAddr := fs.String("gateway-addr", "127.0.0.1:10000", "the stand-in gateway's listen address")
	dir := fs.String("dir", "", "where to write the demo configuration (default: a temporary directory)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	logger, err := sf.logger(stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s, err := testenv.StartStack(ctx, testenv.StackOptions{
		GRPCAddr: sf.grpcAddr, HTTPAddr: sf.httpAddr, AuthzAddr: *authzAddr, GatewayAddr: *gatewayAddr, Logger: logger, Dir: *dir,
	})
	if err != nil {
		// A busy port is a runtime failure (exit 1); the error names the address.
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprint(stdout, testenv.DemoInstructions(s))
	<-ctx.Done()
	fmt.Fprintln(stdout, "\nstopping…")
	return s.Close()
}
