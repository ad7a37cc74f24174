// Command noop-authz is the reference point of the load harness (make bench-load, issue 11): an
// Envoy ext_authz gRPC server that does nothing but answer OK with one `authorization` header
// set, on plain grpc-go. Whatever tokengate costs above it is tokengate's own; what both pay is
// grpc-go's and the kernel's.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
)

type noop struct {
	authv3.UnimplementedAuthorizationServer
}

// Check allocates its answer per call, as a real server does (the header value differs per
// caller in tokengate); the overwrite action is the one tokengate sends.
func (noop) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{
		Status: &status.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{{
				Header:       &corev3.HeaderValue{Key: "authorization", Value: "Bearer noop"},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			}},
		}},
	}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	pprofAddr := flag.String("pprof-addr", "", "a loopback address for net/http/pprof (the harness's --profile-dir)")
	flag.Parse()
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "noop-authz:", err)
		os.Exit(1)
	}
	// The harness reads the bound address from the first line, the pprof address from the second.
	fmt.Println(lis.Addr().String())
	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr); err != nil {
			fmt.Fprintln(os.Stderr, "noop-authz:", err)
			os.Exit(1)
		}
	}
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, noop{})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Stop()
	}()
	if err := srv.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, "noop-authz:", err)
		os.Exit(1)
	}
}

// servePprof serves the CPU profile on a loopback address, so the no-op's share of grpc-go can be
// read beside tokengate's (tgprofd).
func servePprof(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--pprof-addr: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--pprof-addr: %q is not a loopback address", addr)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("pprof listener: %w", err)
	}
	fmt.Println(lis.Addr().String())
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go func() { _ = http.Serve(lis, mux) }()
	return nil
}
