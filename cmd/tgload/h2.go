package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// h2conn is the lean client's transport: one HTTP/2 connection (RFC 9113) speaking gRPC unary
// calls with a header block encoded once and a message marshalled once, so a Check costs the
// client little more than two frame writes and a frame read. grpc-go's own client costs about as
// much CPU per call as the no-op server, which would make the client, not the server, the limit
// of a one-core-each measurement. Response header blocks are skipped, never decoded: success is
// a response message (gRPC never sends one with an error status) that allows the request, and
// the end of the stream.
type h2conn struct {
	c      net.Conn
	bw     *bufio.Writer
	wmu    sync.Mutex // guards bw, nextID, sendWin and streams' registration order
	wcond  *sync.Cond
	nextID uint32
	// sendWin is the connection's send flow-control window (RFC 9113 §6.9): DATA we may still
	// send before the server's WINDOW_UPDATE.
	sendWin int64
	block   []byte // the request header block, HPACK literals (RFC 7541 §6.2.2)

	smu     sync.Mutex
	streams map[uint32]*h2call
	err     error // set once the connection failed; every waiting call gets it
	pending chan struct{}
}

type h2call struct {
	msg  []byte
	done chan error
}

const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
)

// hpackLiteral appends a "literal header field without indexing, new name" (RFC 7541 §6.2.2)
// with plain (not Huffman) strings.
func hpackLiteral(b []byte, name, value string) []byte {
	b = append(b, 0)
	b = hpackString(b, name)
	return hpackString(b, value)
}

// hpackString appends a string literal (RFC 7541 §5.2) with its 7-bit-prefix length (§5.1).
func hpackString(b []byte, s string) []byte {
	n := len(s)
	if n < 127 {
		b = append(b, byte(n))
	} else {
		b = append(b, 127)
		for n -= 127; n >= 128; n >>= 7 {
			b = append(b, byte(n%128+128))
		}
		b = append(b, byte(n))
	}
	return append(b, s...)
}

func dialH2(ctx context.Context, addr string, timeout time.Duration) (*h2conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	h := &h2conn{c: c, bw: bufio.NewWriterSize(c, 64<<10), nextID: 1, sendWin: 65535,
		streams: map[uint32]*h2call{}, pending: make(chan struct{}, 1)}
	h.wcond = sync.NewCond(&h.wmu)
	// gRPC over HTTP/2 (PROTOCOL-HTTP2.md in grpc/grpc): the request headers, and grpc-timeout
	// as Envoy sends it (its configured timeout, in milliseconds, "200m").
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", checkMethod},
		{":authority", addr}, {"content-type", "application/grpc"}, {"te", "trailers"},
		{"grpc-timeout", strconv.FormatInt(timeout.Milliseconds(), 10) + "m"}, {"user-agent", "envoy/tgload"}} {
		h.block = hpackLiteral(h.block, kv[0], kv[1])
	}
	// The preface, our SETTINGS (a large initial stream window: answers never wait for us), and
	// a large connection window (RFC 9113 §6.9.2: SETTINGS cannot raise the connection's).
	h.bw.WriteString("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	settings := binary.BigEndian.AppendUint16(nil, 0x4) // SETTINGS_INITIAL_WINDOW_SIZE
	settings = binary.BigEndian.AppendUint32(settings, 1<<30)
	h.frame(frameSettings, 0, 0, settings)
	h.frame(frameWindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, 1<<30))
	if err := h.bw.Flush(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("h2 preface: %w", err)
	}
	go h.readLoop()
	go h.flushLoop()
	return h, nil
}

// frame appends one frame to the write buffer (RFC 9113 §4.1); wmu held.
func (h *h2conn) frame(typ, flags byte, stream uint32, payload []byte) {
	var hdr [9]byte
	hdr[0], hdr[1], hdr[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	hdr[3], hdr[4] = typ, flags
	binary.BigEndian.PutUint32(hdr[5:], stream)
	h.bw.Write(hdr[:])
	h.bw.Write(payload)
}

// flushLoop writes what the callers buffered, once per wake-up: the calls that arrive while a
// flush is in the kernel share the next one (what Envoy's connection does too).
func (h *h2conn) flushLoop() {
	for range h.pending {
		h.wmu.Lock()
		err := h.bw.Flush()
		h.wmu.Unlock()
		if err != nil {
			h.fail(fmt.Errorf("h2 write: %w", err))
			return
		}
	}
}

// call sends one gRPC message (msg: a marshalled CheckRequest) and waits for the answer.
func (h *h2conn) call(ctx context.Context, msg []byte, c *h2call) error {
	c.msg = c.msg[:0]
	h.wmu.Lock()
	size := int64(5 + len(msg))
	for h.sendWin < size && h.err == nil {
		h.wcond.Wait()
	}
	h.smu.Lock()
	err := h.err
	id := h.nextID
	if err == nil {
		h.streams[id] = c
	}
	h.smu.Unlock()
	if err != nil {
		h.wmu.Unlock()
		return err
	}
	h.nextID += 2
	h.sendWin -= size
	h.frame(frameHeaders, flagEndHeaders, id, h.block)
	// The gRPC message: not compressed (0), the length, the bytes (PROTOCOL-HTTP2.md).
	var prefix [5]byte
	binary.BigEndian.PutUint32(prefix[1:], uint32(len(msg)))
	var hdr [9]byte
	hdr[0], hdr[1], hdr[2] = byte(size>>16), byte(size>>8), byte(size)
	hdr[3], hdr[4] = frameData, flagEndStream
	binary.BigEndian.PutUint32(hdr[5:], id)
	h.bw.Write(hdr[:])
	h.bw.Write(prefix[:])
	h.bw.Write(msg)
	h.wmu.Unlock()
	select {
	case h.pending <- struct{}{}:
	default:
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("check: %w", ctx.Err())
	}
}

func (h *h2conn) fail(err error) {
	h.smu.Lock()
	if h.err == nil {
		h.err = err
	}
	for id, c := range h.streams {
		c.done <- h.err
		delete(h.streams, id)
	}
	h.smu.Unlock()
	h.wmu.Lock()
	h.wcond.Broadcast()
	h.wmu.Unlock()
}

func (h *h2conn) close() {
	h.fail(errors.New("h2: closed"))
	_ = h.c.Close()
}

// readLoop reads the server's frames: messages and ends of streams for the callers, and the
// connection's bookkeeping (SETTINGS and PING acknowledged, WINDOW_UPDATE, our window refilled).
func (h *h2conn) readLoop() {
	br := bufio.NewReaderSize(h.c, 64<<10)
	var hdr [9]byte
	var payload []byte
	var received int64
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			h.fail(fmt.Errorf("h2 read: %w", err))
			return
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		typ, flags, id := hdr[3], hdr[4], binary.BigEndian.Uint32(hdr[5:])&0x7fffffff
		if cap(payload) < n {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(br, payload); err != nil {
			h.fail(fmt.Errorf("h2 read: %w", err))
			return
		}
		switch typ {
		case frameData:
			data := payload
			if flags&flagPadded != 0 && len(data) > 0 {
				pad := int(data[0])
				if pad >= len(data) {
					h.fail(errors.New("h2: bad padding"))
					return
				}
				data = data[1 : len(data)-pad]
			}
			h.smu.Lock()
			if c := h.streams[id]; c != nil {
				c.msg = append(c.msg, data...)
			}
			h.smu.Unlock()
			if received += int64(n); received > 1<<29 {
				h.wmu.Lock()
				h.frame(frameWindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, uint32(received)))
				h.wmu.Unlock()
				received = 0
				h.kick()
			}
			if flags&flagEndStream != 0 {
				h.finish(id, nil)
			}
		case frameHeaders:
			// The response headers, or the trailers (END_STREAM) with grpc-status.
			if flags&flagEndStream != 0 {
				h.finish(id, nil)
			}
		case frameRSTStream:
			h.finish(id, errors.New("h2: stream reset"))
		case frameSettings:
			if flags&flagAck == 0 {
				h.wmu.Lock()
				h.frame(frameSettings, flagAck, 0, nil)
				h.wmu.Unlock()
				h.kick()
			}
		case framePing:
			if flags&flagAck == 0 {
				h.wmu.Lock()
				h.frame(framePing, flagAck, 0, payload)
				h.wmu.Unlock()
				h.kick()
			}
		case frameWindowUpdate:
			if id == 0 && n == 4 {
				h.wmu.Lock()
				h.sendWin += int64(binary.BigEndian.Uint32(payload) & 0x7fffffff)
				h.wcond.Broadcast()
				h.wmu.Unlock()
			}
		case frameGoAway:
			h.fail(errors.New("h2: the server sent GOAWAY"))
			return
		}
	}
}

func (h *h2conn) kick() {
	select {
	case h.pending <- struct{}{}:
	default:
	}
}

// finish ends stream id: success is a whole gRPC message that allows the request.
func (h *h2conn) finish(id uint32, err error) {
	h.smu.Lock()
	c := h.streams[id]
	delete(h.streams, id)
	h.smu.Unlock()
	if c == nil {
		return
	}
	if err == nil {
		switch m := c.msg; {
		case len(m) < 5 || int(binary.BigEndian.Uint32(m[1:5])) != len(m)-5:
			err = errors.New("check: no answer (a gRPC error status)")
		case !allowed(m[5:]):
			err = errors.New("check: denied")
		}
	}
	c.done <- err
}
