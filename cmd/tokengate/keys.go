package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/secrets"
)

// cmdKeygen writes a private signing key as PKCS#8 PEM (RFC 5208; docs/operations.md#commands).
func cmdKeygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen", stderr)
	alg := fs.String("alg", "ES256", "signing algorithm: "+jose.SigningAlgorithmList())
	kid := fs.String("kid", "", "key id (documentation only: the kid is set in the configuration)")
	out := fs.String("out", "", "write the key to this file (mode 0600) instead of stdout")
	ifMissing := fs.Bool("if-missing", false, "with --out: succeed without writing when the file already exists (one-shot init containers)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *ifMissing && *out != "" {
		if _, err := os.Stat(*out); err == nil {
			fmt.Fprintf(stderr, "keygen: %s exists; left as it is\n", *out)
			return nil
		}
	}
	key, err := jose.GenerateKey(*alg, *kid)
	if err != nil {
		return usageErrorf("keygen: %w", err)
	}
	pem, err := key.MarshalPEM()
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if *out == "" {
		_, err = stdout.Write(pem)
		return err
	}
	// O_EXCL: never overwrite an existing key by accident.
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if _, err := f.Write(pem); err != nil {
		f.Close()
		return fmt.Errorf("keygen: %w", err)
	}
	return f.Close()
}

// cmdHashSecret reads a secret on stdin and prints its client_secret_hash. One trailing
// newline is stripped so `echo secret | tokengate hash-secret` does what one means.
func cmdHashSecret(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := newFlagSet("hash-secret", io.Discard)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	data, err := io.ReadAll(bufio.NewReader(io.LimitReader(stdin, 1<<16)))
	if err != nil {
		return fmt.Errorf("hash-secret: %w", err)
	}
	secret := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if secret == "" {
		return usageErrorf("hash-secret: empty secret on stdin")
	}
	fmt.Fprintln(stdout, secrets.Hash(secret))
	return nil
}

func newFlagSet(name string, stderr io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	return fs
}

// parseFlags turns a flag error into a usage error (exit 2); --help is not an error.
func parseFlags(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return errHelp
		}
		return usageErrorf("%s: %w", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usageErrorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}
