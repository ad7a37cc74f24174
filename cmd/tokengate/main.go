// Command tokengate is an external-authorization server for Envoy and forward-auth gateways,
// and an OAuth2 client-credentials authorization server. See README.md and docs/operations.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, errSilent) {
		fmt.Fprintln(os.Stderr, "tokengate:", err)
	}
	os.Exit(exitCode(err))
}
