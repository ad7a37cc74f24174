package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestDemoBusyPort (issue 9, item 12): `make run` with one of the demo's ports already taken
// says which address is busy and exits 1, instead of panicking while it cleans up the half-built
// stack.
func TestDemoBusyPort(t *testing.T) {
	for _, flag := range []string{"--grpc-addr", "--http-addr", "--authz-addr", "--gateway-addr"} {
		t.Run(flag, func(t *testing.T) {
			busy, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer busy.Close()
			addr := busy.Addr().String()
			args := []string{"demo", "--dir", t.TempDir(), "--log-level", "error"}
			for _, f := range []string{"--grpc-addr", "--http-addr", "--authz-addr", "--gateway-addr"} {
				a := "127.0.0.1:0"
				if f == flag {
					a = addr
				}
				args = append(args, f, a)
			}
			// A demo that wrongly starts serves until ctx ends; the deadline turns that into a
			// failure rather than a hung test.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			err = run(ctx, args, strings.NewReader(""), &out, &errb)
			if err == nil {
				t.Fatalf("demo started with %s taken\nstdout: %s", addr, out.String())
			}
			if code := exitCode(err); code != exitFailure {
				t.Errorf("exit %d, want %d", code, exitFailure)
			}
			if msg := err.Error(); !strings.Contains(msg, addr) || !strings.Contains(msg, "address already in use") {
				t.Errorf("message %q does not name the busy address %s", msg, addr)
			}
		})
	}
}
