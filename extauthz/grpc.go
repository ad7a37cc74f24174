package extauthz

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/structpb"
)

// Decider is what the transports need: one decision per request.
type Decider interface {
	Decide(ctx context.Context, req Request) Decision
}

// CheckServer implements envoy.service.auth.v3.Authorization over a Decider.
type CheckServer struct {
	authv3.UnimplementedAuthorizationServer
	decider Decider
	logger  *slog.Logger
}

// NewCheckServer returns the gRPC Authorization service for d.
func NewCheckServer(d Decider, logger *slog.Logger) *CheckServer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &CheckServer{decider: d, logger: logger}
}

// Check never returns an RPC error: every request gets a CheckResponse, and a failure inside
// tokengate is a 503 denial (fail closed), because Envoy treats an RPC error as a broken server
// and answers with status_on_error instead of our decision.
func (s *CheckServer) Check(ctx context.Context, in *authv3.CheckRequest) (resp *authv3.CheckResponse, err error) {
	defer func() {
		if v := recover(); v != nil {
			s.logger.ErrorContext(ctx, "check panicked; denying", slog.Any("panic", v))
			d := unavailable("the authorization server failed", "internal error")
			resp = CheckResponseFor(&d)
		}
	}()
	d := s.decider.Decide(ctx, RequestFromCheck(in))
	return CheckResponseFor(&d), nil
}

// RequestFromCheck extracts what the decision needs from Envoy's attributes. Envoy sends
// headers either as a map (lower-case keys, repeated values joined with commas) or, with
// encode_raw_headers, as a header_map list in which a repeated header appears twice.
func RequestFromCheck(in *authv3.CheckRequest) Request {
	attrs := in.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	req := Request{
		RouteName: attrs.GetContextExtensions()["route"],
		Authority: h.GetHost(),
		Path:      h.GetPath(),
		Method:    h.GetMethod(),
		Scheme:    h.GetScheme(),
		// URL-encoded PEM, with the listener's include_peer_certificate (RFC 8705 §3).
		ClientCert: attrs.GetSource().GetCertificate(),
	}
	// The downstream client's address as Envoy saw it (Envoy applies its own X-Forwarded-For
	// rules), for the failure limiter (docs/issuer.md#failure-limiter).
	if a := attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(); a != "" {
		if ip, err := netip.ParseAddr(a); err == nil { // "" would build and drop an error
			req.ClientIP = ip.Unmap()
		}
	}
	if hm := h.GetHeaderMap(); hm != nil {
		// Only the headers used are converted: a raw value is bytes, and a request carries
		// dozens of headers the decision never reads.
		for _, hv := range hm.GetHeaders() {
			switch strings.ToLower(hv.GetKey()) {
			case "authorization":
				req.Authorization = append(req.Authorization, headerValue(hv))
			case ":authority":
				if req.Authority == "" {
					req.Authority = headerValue(hv)
				}
			case "dpop":
				req.DPoP = append(req.DPoP, headerValue(hv))
			}
		}
	} else {
		headers := h.GetHeaders()
		if v, ok := headers["authorization"]; ok {
			req.Authorization = []string{v}
		}
		if req.Authority == "" {
			req.Authority = headers[":authority"]
		}
		if v, ok := headers["dpop"]; ok {
			req.DPoP = []string{v} // repeated headers arrive joined with commas
		}
	}
	return req
}

// headerValue is a header_map entry's value: raw_value when Envoy set it (encode_raw_headers),
// else value.
func headerValue(hv *corev3.HeaderValue) string {
	if raw := hv.GetRawValue(); len(raw) > 0 {
		return string(raw)
	}
	return hv.GetValue()
}

// CheckResponseFor renders a decision as Envoy expects it (docs/decisions.md#the-decision-table,
// #the-allowed-response).
func CheckResponseFor(d *Decision) *authv3.CheckResponse {
	if !d.Allowed {
		var headers []*corev3.HeaderValueOption
		for _, hv := range d.DenialHeaders() {
			headers = append(headers, header(hv.Name, hv.Value))
		}
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(grpcCode(d.Status))},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				// Always explicit: Envoy answers 403 for a denial without a status.
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)},
				Headers: headers,
				Body:    d.Body(),
			}},
		}
	}
	// One allocation holds the answer's messages (they are written once and read by the
	// encoder only), and the metadata is encoded here rather than as a map of structpb.Values:
	// protobuf-go sizes and writes a map field by reflection, which cost a cached Check more
	// than the rest of its answer (issue 11).
	a := &okAnswer{}
	a.status.Code = int32(code.Code_OK)
	a.oneof.OkResponse = &a.ok
	a.resp.Status, a.resp.HttpResponse = &a.status, &a.oneof
	if len(d.SetHeaders) <= len(a.headers) {
		a.ok.Headers = a.headers[:0:len(d.SetHeaders)]
	} else {
		a.ok.Headers = make([]*corev3.HeaderValueOption, 0, len(d.SetHeaders))
	}
	for _, hv := range d.SetHeaders {
		if u := d.upstream; u != nil && hv.Name == u.set[0].Name && hv.Value == u.set[0].Value {
			a.ok.Headers = append(a.ok.Headers, u.grpc)
		} else {
			a.ok.Headers = append(a.ok.Headers, header(hv.Name, hv.Value))
		}
	}
	if len(d.RemoveHeaders) > 0 {
		a.ok.HeadersToRemove = d.RemoveHeaders[:len(d.RemoveHeaders):len(d.RemoveHeaders)]
	}
	if len(d.Metadata) > 0 {
		a.resp.DynamicMetadata = &a.metadata
		a.metadata.ProtoReflect().SetUnknown(appendMetadata(a.buf[:0], d.Metadata))
	}
	return &a.resp
}

// okAnswer is an allowed CheckResponse with its parts, allocated together.
type okAnswer struct {
	resp     authv3.CheckResponse
	status   rpcstatus.Status
	oneof    authv3.CheckResponse_OkResponse
	ok       authv3.OkHttpResponse
	metadata structpb.Struct
	headers  [1]*corev3.HeaderValueOption // the upstream Authorization; more headers take a slice
	buf      [256]byte                    // the encoded metadata, unless it is longer
}

// appendMetadata appends the wire form of google.protobuf.Struct{fields: m}, each value a
// string_value: what proto.Marshal writes for the map, in map order as it does. A Struct with
// these bytes as its unknown fields is, on the wire, the Struct with those fields: the decoder
// (Envoy, or a Go client) sees map entries (struct.proto: `map<string, Value> fields = 1`;
// a map entry is `key = 1, value = 2`; Value's `string_value = 3`).
func appendMetadata(b []byte, m map[string]string) []byte {
	for k, v := range m {
		value := protowire.SizeTag(3) + protowire.SizeBytes(len(v))
		entry := protowire.SizeTag(1) + protowire.SizeBytes(len(k)) + protowire.SizeTag(2) + protowire.SizeBytes(value)
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(entry))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(value))
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	return b
}

// header overwrites: OVERWRITE_IF_EXISTS_OR_ADD is honoured by every Envoy version, unlike the
// deprecated `append` flag whose default differs between the ok and denied responses.
func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func grpcCode(status int) code.Code {
	switch status {
	case 400:
		return code.Code_INVALID_ARGUMENT
	case 401:
		return code.Code_UNAUTHENTICATED
	case 403:
		return code.Code_PERMISSION_DENIED
	case 429:
		return code.Code_RESOURCE_EXHAUSTED
	case 503:
		return code.Code_UNAVAILABLE
	}
	return code.Code_PERMISSION_DENIED
}
