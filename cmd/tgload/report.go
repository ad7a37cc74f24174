package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// pinSelf pins every thread of the client to cpu with `taskset -a -p` once the signing (which
// used every core) is done; it returns what it did, for the table's header.
func pinSelf(cpu int) string {
	path, err := exec.LookPath("taskset")
	if err != nil {
		return "taskset not found: nothing pinned"
	}
	if out, err := exec.Command(path, "-a", "-p", "-c", strconv.Itoa(cpu), strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
		return fmt.Sprintf("taskset failed (%v: %s): client not pinned", err, strings.TrimSpace(string(out)))
	}
	return "pinned with taskset"
}

// machineLine names what produced the figures: the CPU model, the cores, the Go version, the
// date.
func machineLine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%s, nproc %d, %s, %s", model, runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 UTC"))
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }
func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
func mib(b int64) string        { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func printTable(w io.Writer, o options, machine, pinned string, rows []row, tokRate, tokPerCPU float64, rsaCost time.Duration, idle, full int64, memTokens int, took time.Duration) {
	var noop float64
	var nNoop int
	for _, r := range rows {
		if strings.HasPrefix(r.target, "no-op") {
			noop += r.checksPerSec
			nNoop++
		}
	}
	if nNoop > 0 {
		noop /= float64(nNoop)
	}
	fmt.Fprintf(w, "machine: %s\n", machine)
	fmt.Fprintf(w, "servers: GOMAXPROCS=1 on cpu %d, client GOMAXPROCS=1 on cpu %d (%s); closed loop %d in flight over %d connections, %s window after %s warm-up; open loop %d Checks/s for %s; grpc-timeout %s\n\n",
		o.serverCPU, o.clientCPU, pinned, o.concurrency, o.conns, o.duration, o.warmup, o.rate, o.openFor, o.timeout)
	fmt.Fprintln(w, "| target | Checks/s | ratio to no-op | server CPU per Check | server core busy | client CPU per Check | p50 @ rate | p99 @ rate | RSS after |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %.0f | %.2f | %s | %.0f%% | %s | %s | %s | %s |\n", r.target, r.checksPerSec, r.checksPerSec/noop,
			us(r.cpuPerCheck), 100*r.serverUtil, us(r.clientPerCheck), ms(r.p50), ms(r.p99), mib(r.rss))
	}
	fmt.Fprintf(w, "| bare RSA-2048 PKCS#1 v1.5 verify (crypto/rsa, client core) | — | — | %s | — | — | — | — | — |\n\n", us(rsaCost))
	for _, r := range rows {
		if r.note != "" {
			fmt.Fprintf(w, "%s: %s\n", r.target, r.note)
		}
	}
	fmt.Fprintf(w, "ratio to no-op: against the mean of the no-op rows (%.0f Checks/s)\n", noop)
	fmt.Fprintf(w, "RSS: %s idle, %s after %d distinct ES256 tokens through passthrough (default verified_tokens, a fresh process)\n", mib(idle), mib(full), memTokens)
	fmt.Fprintf(w, "token endpoint (client_credentials, ES256): %.0f tokens/s, %.0f tokens per second of server CPU\n", tokRate, tokPerCPU)
	fmt.Fprintf(w, "run took %s\n", took.Round(time.Second))
}
