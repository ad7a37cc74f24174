package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tokengate/tokengate/internal/jose"
)

// Exit codes (docs/operations.md#commands).
const (
	exitOK      = 0
	exitFailure = 1 // runtime failure
	exitUsage   = 2 // bad usage or bad configuration
)

// usageError is bad usage or bad configuration: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// errSilent marks an error whose message was already printed (validate's problem list).
var errSilent = errors.New("already reported")

// errHelp is --help on a command: the flag set printed its usage; not an error.
var errHelp = errors.New("help shown")

type silentUsage struct{}

func (silentUsage) Error() string { return "invalid configuration" }
func (silentUsage) Unwrap() []error {
	return []error{errSilent, usageError{errors.New("invalid configuration")}}
}

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var u usageError
	if errors.As(err, &u) {
		return exitUsage
	}
	return exitFailure
}

// usageText is the top-level help; the algorithm list is jose's (jose.SigningAlgorithmList).
func usageText() string {
	return `usage: tokengate <command> [flags]

commands:
  serve --config FILE      run the ext_authz gRPC server and the HTTP endpoints
  validate --config FILE   check a configuration file; prints every problem, exits 2 if any
  demo                     everything on loopback with no file: issuer, ext_authz, echo upstream, gateway
  keygen --alg ALG         write a private signing key (PEM, PKCS#8): ` + jose.SigningAlgorithmList() + `
  hash-secret              read a client secret on stdin, print its client_secret_hash
  version                  print the version
`
}

// run is the whole program: main only calls it, so tests run the binary in-process.
// Signals are not handled here but by serve and demo, which own their servers.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := dispatch(ctx, args, stdin, stdout, stderr); !errors.Is(err, errHelp) {
		return err
	}
	return nil
}

func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText())
		return usageErrorf("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, stdout, stderr)
	case "validate":
		return cmdValidate(rest, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, rest, stdout, stderr)
	case "keygen":
		return cmdKeygen(rest, stdout, stderr)
	case "hash-secret":
		return cmdHashSecret(rest, stdin, stdout)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "tokengate", version)
		return nil
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usageText())
		return nil
	}
	fmt.Fprint(stderr, usageText())
	return usageErrorf("unknown command %q", strings.TrimSpace(cmd))
}
