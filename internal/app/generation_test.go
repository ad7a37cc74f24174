package app_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const generationConfig = `server:
  forward_auth_headers: request
routes:
  - {name: api, match: {path_prefix: PREFIX}, authenticate: {none: {}}, upstream: {remove: {}}}
`

// TestReloadSwapsOneGeneration: the gRPC Check and /authz both judge with the configuration
// current after a reload. They read one generation (the App's state: authorizer and
// forward-auth handler together); a transport left on its own pointer, or on the old
// authorizer, keeps allowing /api/ after the route moved away.
func TestReloadSwapsOneGeneration(t *testing.T) {
	path := writeConfig(t, strings.Replace(generationConfig, "PREFIX", "/api/", 1))
	a, _, _ := start(t, path)

	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	check := func() code.Code {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/api/x", Host: "api.example.test",
				Headers: map[string]string{":method": "GET", ":path": "/api/x", ":authority": "api.example.test"},
			}},
		}})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return code.Code(resp.GetStatus().GetCode())
	}
	authz := func() int {
		t.Helper()
		resp, err := http.Get("http://" + a.HTTPAddr() + "/authz/api/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	for _, step := range []struct {
		prefix string
		grpc   code.Code
		http   int
	}{
		{"/api/", code.Code_OK, http.StatusOK},
		{"/other/", code.Code_PERMISSION_DENIED, http.StatusForbidden},
		{"/api/", code.Code_OK, http.StatusOK},
	} {
		if err := os.WriteFile(path, []byte(strings.Replace(generationConfig, "PREFIX", step.prefix, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := a.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := check(); got != step.grpc {
			t.Errorf("route at %s: gRPC Check of /api/x = %v, want %v", step.prefix, got, step.grpc)
		}
		if got := authz(); got != step.http {
			t.Errorf("route at %s: /authz/api/x = %d, want %d", step.prefix, got, step.http)
		}
	}
}
