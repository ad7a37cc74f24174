// Command tgload is the load harness of issue 11 (make bench-load): it starts the no-op
// reference ext_authz server and tokengate, each pinned to one core with GOMAXPROCS=1, drives
// both with the same lean gRPC client pinned to another core, and prints one table: Checks/s,
// the ratio to the no-op, the server's CPU per Check (from /proc/PID/stat), p50/p99 at a fixed
// rate, RSS (/proc/PID/status) idle and after N distinct tokens, the token endpoint's rate and
// the bare cost of one RSA-2048 verify. Every address it uses is on 127.0.0.1.
package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

type options struct {
	tokengate, noop, profd string
	profileDir             string
	warmup, duration       time.Duration
	openFor                time.Duration
	rate                   int
	concurrency, conns     int
	timeout                time.Duration
	memTokens              int
	rsTokens, rsCache      int
	serverCPU, clientCPU   int
	tokenFor               time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.tokengate, "tokengate", "bin/tokengate", "the tokengate binary")
	flag.StringVar(&o.noop, "noop", "bin/noop-authz", "the no-op ext_authz server binary")
	flag.StringVar(&o.profd, "tgprofd", "bin/tgprofd", "tokengate with a pprof listener (only with --profile-dir)")
	flag.StringVar(&o.profileDir, "profile-dir", "", "write a CPU profile of tokengate per target here (runs tgprofd instead of tokengate)")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "closed loop: time before the measuring window")
	flag.DurationVar(&o.duration, "duration", 4*time.Second, "closed loop: the measuring window")
	flag.DurationVar(&o.openFor, "open-for", 3*time.Second, "open loop: how long at --rate")
	flag.IntVar(&o.rate, "rate", 1000, "open loop: Checks per second")
	flag.IntVar(&o.concurrency, "concurrency", 64, "closed loop: requests in flight")
	flag.IntVar(&o.conns, "conns", 2, "HTTP/2 connections per target (Envoy: one per worker)")
	flag.DurationVar(&o.timeout, "timeout", 200*time.Millisecond, "per-call deadline sent as grpc-timeout (Envoy's ext_authz default)")
	flag.IntVar(&o.memTokens, "mem-tokens", 100000, "distinct ES256 tokens for the RSS figure (default verified_tokens)")
	flag.IntVar(&o.rsTokens, "rs-tokens", 4096, "distinct RS256 tokens for the uncached passthrough target")
	flag.IntVar(&o.rsCache, "rs-cache", 1024, "verified_tokens of the throughput instance: below --rs-tokens, so round-robin never hits")
	flag.IntVar(&o.serverCPU, "server-cpu", 0, "the core the servers are pinned to")
	flag.IntVar(&o.clientCPU, "client-cpu", 1, "the core the client is pinned to")
	flag.DurationVar(&o.tokenFor, "token-for", 3*time.Second, "token endpoint: the measuring window")
	flag.Parse()
	if o.rsCache >= o.rsTokens {
		fmt.Fprintln(os.Stderr, "tgload: --rs-cache must be below --rs-tokens, or the passthrough target hits the cache")
		os.Exit(2)
	}
	ctx, stop := signalContext()
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tgload:", err)
		os.Exit(1)
	}
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// row is one line of the table.
type row struct {
	target         string
	checksPerSec   float64
	cpuPerCheck    time.Duration
	serverUtil     float64 // server CPU seconds per wall second in the window (1.0 = its core saturated)
	clientPerCheck time.Duration
	p50, p99       time.Duration
	rss            int64
	note           string
}

func run(ctx context.Context, o options, out io.Writer) error {
	t0 := time.Now()
	machine := machineLine()
	say := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "tgload: "+format+"\n", a...) }

	// Sign first, on every core: RSA-2048 signing is the slow part of the set-up.
	s, err := newSigner()
	if err != nil {
		return err
	}
	say("signing %d RS256 and %d ES256 tokens", o.rsTokens+1, o.memTokens)
	rsTokens, err := s.tokens("RS256", 1, o.rsTokens)
	if err != nil {
		return err
	}
	caller, err := s.token("RS256", 0)
	if err != nil {
		return err
	}
	esTokens, err := s.tokens("ES256", 1_000_000, o.memTokens)
	if err != nil {
		return err
	}
	pinned := pinSelf(o.clientCPU)
	runtime.GOMAXPROCS(1)

	lb, err := startLoopback(s.jwks())
	if err != nil {
		return err
	}
	defer lb.close()
	dir, err := os.MkdirTemp("", "tgload-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)

	var rows []row
	// The no-op reference.
	noopArgs := []string{"--addr", "127.0.0.1:0"}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return fmt.Errorf("profile dir: %w", err)
		}
		noopArgs = append(noopArgs, "--pprof-addr", "127.0.0.1:0")
	}
	noop, err := startServer(ctx, o, "noop", dir, o.noop, noopArgs...)
	if err != nil {
		return err
	}
	noopAddr, err := noop.readLine()
	if err == nil && o.profileDir != "" {
		noop.pprof, err = noop.readLine()
	}
	if err != nil {
		return errors.Join(err, noop.stop())
	}
	go noop.discardStdout()
	noopReq, err := checkRequest("/api/x", caller)
	if err != nil {
		return errors.Join(err, noop.stop())
	}
	say("target no-op")
	r, err := measure(ctx, o, noop, noopAddr, "no-op", func(int) []byte { return noopReq }, 1, "Bearer noop", profileTo(o, "no-op"))
	if err != nil {
		return errors.Join(err, noop.stop())
	}
	rows = append(rows, r)

	// tokengate, throughput instance.
	tg, grpcAddr, httpAddr, err := startTokengate(ctx, o, dir, "throughput", lb, o.rsCache, o.profileDir != "")
	if err != nil {
		return errors.Join(err, noop.stop())
	}
	mintReq, err1 := checkRequest("/mint/x", caller)
	fetchReq, err2 := checkRequest("/fetch/x", caller)
	exchangeReq, err3 := checkRequest("/exchange/x", caller)
	if err := errors.Join(err1, err2, err3); err != nil {
		return errors.Join(err, noop.stop(), tg.stop())
	}
	passReqs := make([][]byte, len(rsTokens))
	for i, tok := range rsTokens {
		if passReqs[i], err = checkRequest("/pass/x", tok); err != nil {
			return errors.Join(err, noop.stop(), tg.stop())
		}
	}
	for _, t := range []struct {
		name, want string
		reqs       func(int) []byte
		n          int
	}{
		{"mint (RS256 caller, repeated)", "Bearer ey", func(int) []byte { return mintReq }, 1},
		{"fetch (repeated token)", "Bearer opaque-upstream-token-from-the-load-idp", func(int) []byte { return fetchReq }, 1},
		{"token_exchange (RS256 caller, repeated)", "Bearer exchanged-upstream-token-from-the-load-idp", func(int) []byte { return exchangeReq }, 1},
		{"passthrough (new RS256 token every Check)", "", func(i int) []byte { return passReqs[i] }, len(passReqs)},
	} {
		say("target %s", t.name)
		exchanges0 := lb.exchanges.Load()
		hits0, _, err := cacheCounts(httpAddr)
		if err != nil {
			return errors.Join(err, noop.stop(), tg.stop())
		}
		r, err := measure(ctx, o, tg, grpcAddr, t.name, t.reqs, t.n, t.want, profileTo(o, t.name))
		if err != nil {
			return errors.Join(err, noop.stop(), tg.stop())
		}
		hits1, misses, err := cacheCounts(httpAddr)
		if err != nil {
			return errors.Join(err, noop.stop(), tg.stop())
		}
		if t.n > 1 {
			if hits1 != hits0 {
				return errors.Join(fmt.Errorf("passthrough: the verified-token cache hit %d times; the target must miss every time", hits1-hits0), noop.stop(), tg.stop())
			}
			r.note = fmt.Sprintf("verified-token cache: 0 hits, %d misses so far", misses)
		}
		if n := lb.exchanges.Load() - exchanges0; strings.HasPrefix(t.name, "token_exchange") {
			// One caller token: one exchange for the whole target, every other Check a cache hit.
			if n != 1 {
				return errors.Join(fmt.Errorf("token_exchange: %d exchanges, want 1 (the exchanged token must be cached)", n), noop.stop(), tg.stop())
			}
			r.note = "1 token exchange for the whole target"
		}
		rows = append(rows, r)
	}

	// Issue 13's costs, in the same instance: a DPoP-bound token (cached) with a fresh proof
	// every Check, and an opaque token whose introspection answer is cached.
	var fetchRate float64 // the cached fetch Check: no DPoP Check is faster
	for _, r := range rows {
		if strings.HasPrefix(r.target, "fetch") {
			fetchRate = r.checksPerSec
		}
	}
	say("target dpop: signing proofs for %.0f Checks/s", fetchRate)
	dpopReqs, err := dpopRequests(s, int(fetchRate*(o.warmup+o.duration).Seconds()*1.3)+int(o.openFor.Seconds()*float64(o.rate))+1000)
	if err != nil {
		return errors.Join(err, noop.stop(), tg.stop())
	}
	introReq, err := checkRequest("/opaque/x", opaqueToken)
	if err != nil {
		return errors.Join(err, noop.stop(), tg.stop())
	}
	intro0 := lb.introspections.Load()
	for _, t := range []struct {
		name string
		reqs func(int) []byte
		n    int
	}{
		{"dpop (bound RS256 token, repeated; new ES256 proof every Check)", func(i int) []byte { return dpopReqs[i] }, len(dpopReqs)},
		{"introspected (opaque token, repeated: cached answer)", func(int) []byte { return introReq }, 1},
	} {
		say("target %s", t.name)
		r, err := measure(ctx, o, tg, grpcAddr, t.name, t.reqs, t.n, "", profileTo(o, t.name))
		if err != nil {
			return errors.Join(err, noop.stop(), tg.stop())
		}
		rows = append(rows, r)
	}
	if n := lb.introspections.Load() - intro0; n != 1 {
		return errors.Join(fmt.Errorf("introspected: %d introspection calls, want 1 (the answer must be cached)", n), noop.stop(), tg.stop())
	}
	rows[len(rows)-1].note = "1 introspection call for the whole target"
	rows[len(rows)-2].note = fmt.Sprintf("%d pre-signed proofs, each sent once (a replay would be refused and fail the run)", len(dpopReqs))

	// The no-op again: the machine is shared, so a drift between the two no-op rows shows how far
	// the rows of this run can be compared.
	say("target no-op (again)")
	r, err = measure(ctx, o, noop, noopAddr, "no-op (again)", func(int) []byte { return noopReq }, 1, "Bearer noop", "")
	if err != nil {
		return errors.Join(err, noop.stop(), tg.stop())
	}
	rows = append(rows, r)
	if err := noop.stop(); err != nil {
		return errors.Join(err, tg.stop())
	}

	say("token endpoint")
	tokRate, tokPerCPU, err := tokenEndpoint(ctx, o, tg, httpAddr)
	if err != nil {
		return errors.Join(err, tg.stop())
	}
	if err := tg.stop(); err != nil {
		return err
	}

	say("bare RSA-2048 verify")
	rsaCost, err := bareRSAVerify(s, caller)
	if err != nil {
		return err
	}

	say("memory: %d distinct ES256 tokens through passthrough", len(esTokens))
	idle, full, err := memory(ctx, o, dir, lb, esTokens)
	if err != nil {
		return err
	}

	printTable(out, o, machine, pinned, rows, tokRate, tokPerCPU, rsaCost, idle, full, len(esTokens), time.Since(t0))
	return nil
}

func profileTo(o options, target string) string {
	if o.profileDir == "" {
		return ""
	}
	name, _, _ := strings.Cut(target, " ")
	return filepath.Join(o.profileDir, name+".pprof")
}

// measure checks the target's first answer, then runs the closed loop (throughput and CPU per
// Check in a window after a warm-up) and the open loop (latency at a fixed rate).
func measure(ctx context.Context, o options, srv *server, addr, name string, req func(int) []byte, n int, wantAuth string, profile string) (row, error) {
	r := row{target: name}
	c, err := dial(ctx, addr, o.conns, o.timeout)
	if err != nil {
		return r, err
	}
	defer c.close()
	first, err := c.first(ctx, req(n-1)) // the last: the closed loop reaches it after n-1 others
	if err != nil {
		return r, fmt.Errorf("%s: first Check: %w", name, err)
	}
	if wantAuth != "" {
		var got string
		for _, h := range first.GetOkResponse().GetHeaders() {
			if h.GetHeader().GetKey() == "authorization" {
				got = h.GetHeader().GetValue()
			}
		}
		if !strings.HasPrefix(got, wantAuth) {
			return r, fmt.Errorf("%s: the first Check set authorization %.20q, want a value starting %q", name, got, wantAuth)
		}
	}

	loop := c.startClosed(req, n, 0, o.concurrency)
	if err := sleep(ctx, o.warmup); err != nil {
		return r, errors.Join(err, loop.stop())
	}
	profDone := make(chan error, 1)
	if profile != "" {
		go func() { profDone <- srv.cpuProfile(profile, o.duration) }()
	} else {
		profDone <- nil
	}
	cpu0, err1 := procCPU(srv.pid())
	self0, err2 := procCPU(os.Getpid())
	n0, w0 := loop.ok.Load(), time.Now()
	err = sleep(ctx, o.duration)
	cpu1, err3 := procCPU(srv.pid())
	self1, err4 := procCPU(os.Getpid())
	n1, w1 := loop.ok.Load(), time.Now()
	if err := errors.Join(err, err1, err2, err3, err4, loop.stop(), <-profDone); err != nil {
		return r, fmt.Errorf("%s: closed loop: %w", name, err)
	}
	checks := n1 - n0
	if checks <= 0 {
		return r, fmt.Errorf("%s: no Check answered in the window", name)
	}
	wall := w1.Sub(w0)
	r.checksPerSec = float64(checks) / wall.Seconds()
	r.cpuPerCheck = (cpu1 - cpu0) / time.Duration(checks)
	r.clientPerCheck = (self1 - self0) / time.Duration(checks)
	r.serverUtil = (cpu1 - cpu0).Seconds() / wall.Seconds()

	open := c.openLoop(ctx, offset(req, n, int(loop.next.Load())), o.rate, int(o.openFor.Seconds()*float64(o.rate)), o.concurrency)
	if open.firstErr != nil {
		return r, fmt.Errorf("%s: open loop: %d of %d failed, the first: %w", name, open.failed, open.failed+open.ok, open.firstErr)
	}
	r.p50, r.p99 = percentiles(open.latencies)
	if r.rss, err = procRSS(srv.pid()); err != nil {
		return r, err
	}
	return r, nil
}

// offset continues the round-robin where the closed loop stopped (every index below next was
// sent), so the open loop's tokens are the ones least recently seen.
func offset(req func(int) []byte, n, from int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = req((from + i) % n)
	}
	return out
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
}

// server is one child process pinned to the server core.
type server struct {
	name   string
	cmd    *exec.Cmd
	stdout *bufio.Reader
	logf   string
	pprof  string // tgprofd's pprof address
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// startServer starts bin with GOMAXPROCS=1 under `taskset -c CPU` when taskset exists (taskset
// execs the binary, so the child's pid is the server's).
func startServer(_ context.Context, o options, name, dir, bin string, args ...string) (*server, error) {
	argv := append([]string{bin}, args...)
	if path, err := exec.LookPath("taskset"); err == nil {
		argv = append([]string{path, "-c", strconv.Itoa(o.serverCPU)}, argv...)
	}
	logf := filepath.Join(dir, name+".log")
	lf, err := os.Create(logf)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	defer lf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Stderr = lf
	pr, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &server{name: name, cmd: cmd, stdout: bufio.NewReader(pr), logf: logf}, nil
}

// readLine reads one address the server prints at start.
func (s *server) readLine() (string, error) {
	line, err := s.stdout.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("%s did not print its address: %w%s", s.name, err, s.logTail())
	}
	return strings.TrimSpace(line), nil
}

// discardStdout drains the rest of the server's output, so it never blocks on a full pipe.
func (s *server) discardStdout() { _, _ = io.Copy(io.Discard, s.stdout) }

func (s *server) logTail() string {
	b, _ := os.ReadFile(s.logf)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	if len(b) == 0 {
		return ""
	}
	return "\n" + s.name + " log:\n" + string(b)
}

// stop sends SIGTERM (both servers drain and exit 0) and waits.
func (s *server) stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s exited: %w%s", s.name, err, s.logTail())
		}
		return nil
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		return fmt.Errorf("%s did not stop in 20s%s", s.name, s.logTail())
	}
}

// cpuProfile fetches a CPU profile of d from tgprofd's pprof listener.
func (s *server) cpuProfile(file string, d time.Duration) error {
	if s.pprof == "" {
		return errors.New("profile: the server has no pprof listener (run with --profile-dir)")
	}
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", s.pprof, int(d.Seconds())))
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: status %d", resp.StatusCode)
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		return errors.Join(fmt.Errorf("profile: %w", err), f.Close())
	}
	return f.Close()
}

// startTokengate writes the configuration and starts tokengate (or tgprofd), then waits for
// /readyz (the provider's keys fetched).
func startTokengate(ctx context.Context, o options, dir, name string, lb *loopbackServers, verifiedTokens int, profiled bool) (*server, string, string, error) {
	grpcAddr, err1 := freePort()
	httpAddr, err2 := freePort()
	if err := errors.Join(err1, err2); err != nil {
		return nil, "", "", err
	}
	cfg := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(cfg, []byte(tokengateConfig(grpcAddr, httpAddr, lb, verifiedTokens)), 0o600); err != nil {
		return nil, "", "", fmt.Errorf("config: %w", err)
	}
	var srv *server
	var err error
	if profiled {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return nil, "", "", fmt.Errorf("profile dir: %w", err)
		}
		srv, err = startServer(ctx, o, "tokengate-"+name, dir, o.profd, "--config", cfg)
		if err == nil {
			srv.pprof, err = srv.readLine()
			go srv.discardStdout()
		}
	} else {
		srv, err = startServer(ctx, o, "tokengate-"+name, dir, o.tokengate, "serve", "--config", cfg, "--log-level", "warn")
		if err == nil {
			go srv.discardStdout()
		}
	}
	if err != nil {
		return nil, "", "", err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return srv, grpcAddr, httpAddr, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, "", "", errors.Join(fmt.Errorf("tokengate %s not ready in 20s%s", name, srv.logTail()), srv.stop())
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return nil, "", "", errors.Join(err, srv.stop())
		}
	}
}

// cacheCounts reads tokengate_cache_{hits,misses}_total{cache="verified_tokens"} from /metrics.
func cacheCounts(httpAddr string) (hits, misses int64, err error) {
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return 0, 0, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, fmt.Errorf("metrics: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		name, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		n, perr := strconv.ParseFloat(value, 64)
		switch name {
		case `tokengate_cache_hits_total{cache="verified_tokens"}`:
			hits, err = int64(n), perr
		case `tokengate_cache_misses_total{cache="verified_tokens"}`:
			misses, err = int64(n), perr
		}
		if err != nil {
			return 0, 0, fmt.Errorf("metrics: %s: %w", name, err)
		}
	}
	return hits, misses, nil
}

// tokenEndpoint drives POST /oauth2/token (client_credentials, RFC 6749 §4.4; the issuer signs
// ES256) in a closed loop and returns tokens/s and tokens per second of server CPU.
func tokenEndpoint(ctx context.Context, o options, srv *server, httpAddr string) (perSec, perCPUSec float64, err error) {
	tr := &http.Transport{MaxIdleConnsPerHost: 16, MaxConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	url := "http://" + httpAddr + "/oauth2/token"
	one := func() error {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader("grant_type=client_credentials"))
		if err != nil {
			return fmt.Errorf("token request: %w", err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(issuerClientID, issuerSecret)
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("token request: %w", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("token request: status %d", resp.StatusCode)
		}
		return nil
	}
	if err := one(); err != nil {
		return 0, 0, err
	}
	var ok atomic.Int64
	var stopped atomic.Bool
	errs := make(chan error, 16)
	for range 16 {
		go func() {
			for !stopped.Load() {
				if err := one(); err != nil {
					errs <- err
					return
				}
				ok.Add(1)
			}
			errs <- nil
		}()
	}
	err = sleep(ctx, o.warmup/2)
	cpu0, err0 := procCPU(srv.pid())
	n0, w0 := ok.Load(), time.Now()
	err = errors.Join(err, sleep(ctx, o.tokenFor))
	cpu1, err1 := procCPU(srv.pid())
	n1, wall := ok.Load(), time.Since(w0)
	stopped.Store(true)
	for range 16 {
		err = errors.Join(err, <-errs)
	}
	if err := errors.Join(err, err0, err1); err != nil {
		return 0, 0, fmt.Errorf("token endpoint: %w", err)
	}
	if cpu1 <= cpu0 {
		return 0, 0, errors.New("token endpoint: no server CPU time in the window")
	}
	return float64(n1-n0) / wall.Seconds(), float64(n1-n0) / (cpu1 - cpu0).Seconds(), nil
}

// bareRSAVerify times crypto/rsa's PKCS#1 v1.5 verify of one RS256 token (RFC 7518 §3.3): the
// floor under an uncached RS256 Check.
func bareRSAVerify(s *signer, token string) (time.Duration, error) {
	i := strings.LastIndexByte(token, '.')
	sig, err := b64.DecodeString(token[i+1:])
	if err != nil {
		return 0, fmt.Errorf("rsa: %w", err)
	}
	sum := sha256.Sum256([]byte(token[:i]))
	pub := &s.rs.PublicKey
	n, start := 0, time.Now()
	for time.Since(start) < time.Second || n < 100 {
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
			return 0, fmt.Errorf("rsa: %w", err)
		}
		n++
	}
	return time.Since(start) / time.Duration(n), nil
}

// memory starts a fresh tokengate with the default cache, reads RSS idle, sends every token once
// through the passthrough route, and reads RSS again.
func memory(ctx context.Context, o options, dir string, lb *loopbackServers, tokens []string) (idle, full int64, err error) {
	srv, grpcAddr, httpAddr, err := startTokengate(ctx, o, dir, "memory", lb, 0, false)
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, srv.stop()) }()
	if err := sleep(ctx, 500*time.Millisecond); err != nil {
		return 0, 0, err
	}
	if idle, err = procRSS(srv.pid()); err != nil {
		return 0, 0, err
	}
	c, err := dial(ctx, grpcAddr, o.conns, o.timeout)
	if err != nil {
		return 0, 0, err
	}
	defer c.close()
	req := func(i int) []byte {
		b, err := checkRequest("/pass/x", tokens[i])
		if err != nil {
			panic(err) // a fixed message type with valid UTF-8: Marshal cannot fail
		}
		return b
	}
	loop := c.startClosed(req, len(tokens), len(tokens), o.concurrency)
	loop.wg.Wait()
	if err := loop.stop(); err != nil {
		return 0, 0, fmt.Errorf("memory: %w", err)
	}
	hits, misses, err := cacheCounts(httpAddr)
	if err != nil {
		return 0, 0, err
	}
	if hits != 0 || misses != int64(len(tokens)) {
		return 0, 0, fmt.Errorf("memory: verified-token cache saw %d hits and %d misses, want 0 and %d", hits, misses, len(tokens))
	}
	if full, err = procRSS(srv.pid()); err != nil {
		return 0, 0, err
	}
	return idle, full, nil
}
