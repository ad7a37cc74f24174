package testkit

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Redis is a real redis-server a test started on a loopback port, without persistence. It is
// killed when the test ends.
type Redis struct {
	t    testing.TB
	bin  string
	dir  string
	args []string
	tls  *tls.Config
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *LogBuffer
	exit chan struct{} // closed when cmd has exited
}

// StartRedis starts redis-server with args added to its command line, or skips the test when
// it is not installed (fails under CI=true, see Tool). redis-server cannot be told to pick a
// free port and report it, so a port that was free a moment ago is taken, and another one when
// redis-server exits because someone else took it first.
func StartRedis(t testing.TB, args ...string) *Redis {
	t.Helper()
	return startRedis(t, nil, args)
}

// StartRedisTLS is StartRedis with TLS only: the port is redis-server's --tls-port (plain TCP is
// off), and tc is how to reach it to see that it is up. args must name the certificate files.
func StartRedisTLS(t testing.TB, tc *tls.Config, args ...string) *Redis {
	t.Helper()
	return startRedis(t, tc, args)
}

func startRedis(t testing.TB, tc *tls.Config, args []string) *Redis {
	t.Helper()
	r := &Redis{t: t, bin: Tool(t, "redis-server", "redis-server"), dir: t.TempDir(), args: args, tls: tc}
	var err error
	for range 5 {
		addr := FreeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		r.port, _ = strconv.Atoi(port)
		if err = r.start(); err == nil {
			t.Cleanup(r.Kill)
			return r
		}
	}
	t.Fatalf("cannot start redis-server: %v", err)
	return nil
}

// Addr is the server's host:port.
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// Kill stops the server with SIGKILL (an outage, not a shutdown) and returns once the process
// has exited, so its port no longer answers. It does nothing when the server is not running.
func (r *Redis) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.exit
	if r.t.Failed() {
		r.t.Logf("redis-server output:\n%s", r.out.String())
	}
	r.cmd = nil
}

// Restart starts the server again on the same port with the same arguments, after Kill.
func (r *Redis) Restart() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatalf("restarting redis-server: %v", err)
	}
}

// start runs redis-server on r.port and returns once it answers PING, or an error when it
// exits first (the port was taken) or does not answer within 10 s.
func (r *Redis) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	port := []string{"--port", strconv.Itoa(r.port)}
	if r.tls != nil {
		port = []string{"--port", "0", "--tls-port", strconv.Itoa(r.port)}
	}
	args := append(port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--protected-mode", "no", "--loglevel", "warning")
	cmd := exec.Command(r.bin, append(args, r.args...)...)
	out := &LogBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	exit := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exit) }()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		select {
		case <-exit:
			return fmt.Errorf("redis-server exited: %s", out.String())
		default:
		}
		if ping(r.Addr(), r.tls) {
			r.cmd, r.out, r.exit = cmd, out, exit
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-exit
	return fmt.Errorf("redis-server did not answer PING within 10 s: %s", out.String())
}

// ping reports whether a Redis server answers PING at addr (over TLS when tc is set).
func ping(addr string, tc *tls.Config) bool {
	d := &net.Dialer{Timeout: 200 * time.Millisecond}
	var c net.Conn
	var err error
	if tc != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, tc)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	// -NOAUTH: a server with requirepass is up too.
	return err == nil && (line == "+PONG\r\n" || strings.HasPrefix(line, "-NOAUTH"))
}
