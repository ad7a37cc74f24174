package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

const checkMethod = "/envoy.service.auth.v3.Authorization/Check"

// rawCodec sends pre-marshalled CheckRequests and keeps the answer's bytes, so the client spends
// nothing on protobuf per call. It names itself "proto": the content type on the wire is the
// ordinary application/grpc+proto and the server decodes with its usual codec.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec: marshal %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: unmarshal into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

// checkRequest is what Envoy sends for a GET through an HTTP connection manager with the
// ext_authz filter (headers as a map, lower-case keys); the same bytes go to every target.
func checkRequest(path, token string) ([]byte, error) {
	if token == "" {
		return checkRequestWith(path, nil)
	}
	return checkRequestWith(path, map[string]string{"authorization": "Bearer " + token})
}

// checkRequestWith is checkRequest with the given headers added (authorization, dpop).
func checkRequestWith(path string, extra map[string]string) ([]byte, error) {
	headers := map[string]string{
		":authority": "api.example.com", ":method": "GET", ":path": path, ":scheme": "https",
		"user-agent": "curl/8.5.0", "accept": "*/*", "x-forwarded-proto": "https",
		"x-request-id": "5f0c1c3e-6f4a-4b8e-9a51-3b1d2c0e7a42",
	}
	for k, v := range extra {
		headers[k] = v
	}
	sock := func(a string, p uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: a, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: p}}}}
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: sock("10.1.2.3", 51234)},
		Destination: &authv3.AttributeContext_Peer{Address: sock("10.0.0.10", 443)},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1234567890", Method: "GET", Headers: headers, Path: path, Host: "api.example.com",
			Scheme: "https", Protocol: "HTTP/1.1",
		}},
	}}
	b, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("marshal CheckRequest: %w", err)
	}
	return b, nil
}

// allowed reads only the answer's top-level fields: an OkHttpResponse (field 3) is present
// exactly when the request was allowed (external_auth.proto).
func allowed(resp []byte) bool {
	for len(resp) > 0 {
		num, typ, n := protowire.ConsumeTag(resp)
		if n < 0 {
			return false
		}
		resp = resp[n:]
		if num == 3 && typ == protowire.BytesType {
			return true
		}
		m := protowire.ConsumeFieldValue(num, typ, resp)
		if m < 0 {
			return false
		}
		resp = resp[m:]
	}
	return false
}

// client holds the connections to one target. Envoy opens one HTTP/2 connection per worker
// thread to the ext_authz cluster; conns stands for that.
type client struct {
	addr    string
	conns   []*h2conn
	timeout time.Duration // the per-call deadline, sent as grpc-timeout as Envoy does
}

func dial(ctx context.Context, addr string, conns int, timeout time.Duration) (*client, error) {
	c := &client{addr: addr, timeout: timeout}
	for range conns {
		h, err := dialH2(ctx, addr, timeout)
		if err != nil {
			c.close()
			return nil, err
		}
		c.conns = append(c.conns, h)
	}
	return c, nil
}

func (c *client) close() {
	for _, h := range c.conns {
		h.close()
	}
}

// call sends one pre-marshalled request on connection conn (modulo their number); call is the
// worker's own, reused.
func (c *client) call(ctx context.Context, conn int, req []byte, call *h2call) error {
	return c.conns[conn%len(c.conns)].call(ctx, req, call)
}

func newCall() *h2call { return &h2call{done: make(chan error, 1)} }

// first sends one request through grpc-go and decodes the whole answer: the harness checks the
// header each target must set before it measures anything, with a client that is not its own.
func (c *client) first(ctx context.Context, req []byte) (*authv3.CheckResponse, error) {
	cc, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", c.addr, err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var resp []byte
	if err := cc.Invoke(ctx, checkMethod, &req, &resp); err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	if !allowed(resp) {
		return nil, errors.New("check: denied")
	}
	out := &authv3.CheckResponse{}
	if err := proto.Unmarshal(resp, out); err != nil {
		return nil, fmt.Errorf("decode CheckResponse: %w", err)
	}
	return out, nil
}

// loadResult is one loop's count of answers and failures.
type loadResult struct {
	ok, failed int64
	firstErr   error
	latencies  []time.Duration // open loop only
}

// closedRun keeps concurrency requests in flight, each worker sending the next request of the
// set (round-robin, shared by all workers) as soon as its answer came. The harness reads the
// counters at the edges of its measuring window, so calls still in flight at stop are not
// counted.
type closedRun struct {
	ok, failed atomic.Int64
	next       atomic.Int64
	stopped    atomic.Bool
	errOnce    sync.Once
	firstErr   error
	wg         sync.WaitGroup
}

// startClosed starts the loop; limit > 0 sends each of the first limit requests once and stops.
func (c *client) startClosed(req func(i int) []byte, n, limit, concurrency int) *closedRun {
	r := &closedRun{}
	for w := range concurrency {
		r.wg.Go(func() {
			call := newCall()
			for !r.stopped.Load() {
				i := int(r.next.Add(1) - 1)
				if limit > 0 && i >= limit {
					return
				}
				if err := c.call(context.Background(), w, req(i%n), call); err != nil {
					r.failed.Add(1)
					r.errOnce.Do(func() { r.firstErr = err })
					continue
				}
				r.ok.Add(1)
			}
		})
	}
	return r
}

// stop ends the loop and waits for the calls in flight.
func (r *closedRun) stop() error {
	r.stopped.Store(true)
	r.wg.Wait()
	if r.firstErr != nil {
		return fmt.Errorf("%d of %d calls failed, the first: %w", r.failed.Load(), r.failed.Load()+r.ok.Load(), r.firstErr)
	}
	return nil
}

// openLoop sends n requests at a fixed rate. Request i is due at start + i/rate whatever
// happened to the ones before it, and its latency is measured from that intended time, not from
// when it was sent: when answers are slow and every worker is busy, the requests behind wait in
// the queue and that wait is counted (no coordinated omission).
func (c *client) openLoop(ctx context.Context, reqs [][]byte, rate, n, workers int) loadResult {
	type job struct {
		i   int
		due time.Time
	}
	jobs := make(chan job, n)
	lat := make([]time.Duration, n)
	var ok, failed atomic.Int64
	var errOnce sync.Once
	var firstErr error
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			call := newCall()
			for j := range jobs {
				err := c.call(ctx, w, reqs[j.i%len(reqs)], call)
				lat[j.i] = time.Since(j.due)
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				ok.Add(1)
			}
		})
	}
	period := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * period)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		jobs <- job{i: i, due: due}
	}
	close(jobs)
	wg.Wait()
	return loadResult{ok: ok.Load(), failed: failed.Load(), firstErr: firstErr, latencies: lat}
}
