package envoy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"sigs.k8s.io/yaml"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	// Every "@type" of the shipped files must resolve in the global registry for protojson to
	// unpack it; these packages register the extension types not imported by name above.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"

	"github.com/tokengate/tokengate/internal/config"
)

// The Envoy filter and the tokengate route names the shipped files are built around.
const (
	extAuthzFilter = "envoy.filters.http.ext_authz"
	healthPath     = "/healthz"
)

// envoyFiles are the shipped Envoy bootstraps; grpc tells which ext_authz service each must use.
var envoyFiles = []struct {
	name string
	grpc bool
}{
	{"envoy.yaml", true},
	{"envoy-http.yaml", false},
}

// shippedTokengate loads tokengate.yaml as the compose rig runs it: with the environment
// docker-compose.yaml gives the tokengate service.
func shippedTokengate(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := loadConfig(t, readFile(t, "tokengate.yaml"), nil, composeEnv(t, "docker-compose.yaml", "tokengate"))
	if err != nil {
		t.Fatalf("tokengate.yaml does not pass tokengate's validation:\n%v", err)
	}
	return cfg
}

// nginxTokengate and fwdTokengate load tokengate.yaml as docker-compose.yaml runs it for the
// forward-auth gateways: behind nginx (service tokengate-nginx) and behind Caddy and Traefik
// (service tokengate-fwd).
func nginxTokengate(t *testing.T) *config.Config { return composeTokengate(t, "tokengate-nginx") }
func fwdTokengate(t *testing.T) *config.Config   { return composeTokengate(t, "tokengate-fwd") }

func composeTokengate(t *testing.T, service string) *config.Config {
	t.Helper()
	cfg, err := loadConfig(t, readFile(t, "tokengate.yaml"), nil, composeEnv(t, "docker-compose.yaml", service))
	if err != nil {
		t.Fatalf("tokengate.yaml (compose service %s) does not pass tokengate's validation:\n%v", service, err)
	}
	return cfg
}

// TestEnvoyBootstraps proves each shipped Envoy file valid against Envoy's own API types (every
// Any unpacked and validated, no negative duration, no deprecated field) and checks what no
// schema can: filter order, cluster references, the tokengate routes it names and the
// ext_authz settings tokengate relies on.
func TestEnvoyBootstraps(t *testing.T) {
	tg := shippedTokengate(t)
	for _, f := range envoyFiles {
		t.Run(f.name, func(t *testing.T) {
			noErrors(t, checkEnvoy(readFile(t, f.name), f.grpc, tg))
		})
	}
}

// TestEnvoyBrokenCopies derives broken copies from the good files and proves each is refused with
// the specific reason. cases marked insideAny are invisible to Bootstrap.ValidateAll alone: they
// show that the walk into every Any is what catches them.
func TestEnvoyBrokenCopies(t *testing.T) {
	tg := shippedTokengate(t)
	hcm := []any{"static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config"}
	extAuthz := append(slices.Clone(hcm), "http_filters", 0, "typed_config")
	routes := append(slices.Clone(hcm), "route_config", "virtual_hosts", 0, "routes")
	// routes[0] refuses path parameters, routes[1] is the health route, routes[2] the Envoy route
	// of tokengate's "mint" route in both files.
	const semicolonRoute, mintRoute = 0, 2

	type brokenCase struct {
		name      string
		file      string // "" = both files
		mutate    func(t *testing.T, doc map[string]any)
		want      string
		insideAny bool
	}
	cases := []brokenCase{
		{
			name: "unknown field inside a typed_config",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, extAuthz...)["no_such_field"] = true
			},
			want: `unknown field "no_such_field"`,
		},
		{
			name: "unknown field at the top level",
			mutate: func(t *testing.T, doc map[string]any) {
				doc["static_resource"] = map[string]any{}
			},
			want: `unknown field "static_resource"`,
		},
		{
			name: "empty cluster name inside a typed_config",
			file: "envoy.yaml",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, append(slices.Clone(extAuthz), "grpc_service", "envoy_grpc")...)["cluster_name"] = ""
			},
			want:      "ClusterName: value length must be at least 1",
			insideAny: true,
		},
		{
			name: "empty cluster name inside a typed_config",
			file: "envoy-http.yaml",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, append(slices.Clone(extAuthz), "http_service", "server_uri")...)["cluster"] = ""
			},
			want:      "Cluster: value length must be at least 1",
			insideAny: true,
		},
		{
			name: "negative ext_authz timeout",
			file: "envoy.yaml",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, append(slices.Clone(extAuthz), "grpc_service")...)["timeout"] = "-1s"
			},
			want:      "negative duration",
			insideAny: true,
		},
		{
			name: "negative ext_authz timeout",
			file: "envoy-http.yaml",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, append(slices.Clone(extAuthz), "http_service", "server_uri")...)["timeout"] = "-1s"
			},
			want:      "negative duration",
			insideAny: true,
		},
		{
			name: "negative route timeout",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, append(slices.Clone(routes), mintRoute, "route")...)["timeout"] = "-5s"
			},
			want:      "negative duration",
			insideAny: true,
		},
		{
			name: "ext_authz after the router",
			mutate: func(t *testing.T, doc map[string]any) {
				filters := digList(t, doc, append(slices.Clone(hcm), "http_filters")...)
				filters[0], filters[1] = filters[1], filters[0]
			},
			want: "comes after the router",
		},
		{
			name: "no ext_authz filter",
			mutate: func(t *testing.T, doc map[string]any) {
				m := digMap(t, doc, hcm...)
				m["http_filters"] = digList(t, m, "http_filters")[1:]
			},
			want: "no " + extAuthzFilter + " filter",
		},
		{
			name: "context_extensions route missing from tokengate.yaml",
			file: "envoy.yaml",
			mutate: func(t *testing.T, doc map[string]any) {
				ctx := digMap(t, doc, append(slices.Clone(routes), mintRoute, "typed_per_filter_config", extAuthzFilter, "check_settings", "context_extensions")...)
				ctx["route"] = "no-such-route"
			},
			want: `context_extensions route "no-such-route" is not a route of tokengate.yaml`,
		},
		{
			name: "context_extensions without a route name",
			file: "envoy.yaml",
			mutate: func(t *testing.T, doc map[string]any) {
				ctx := digMap(t, doc, append(slices.Clone(routes), mintRoute, "typed_per_filter_config", extAuthzFilter, "check_settings", "context_extensions")...)
				delete(ctx, "route")
				ctx["other"] = "x"
			},
			want: `has no "route" key`,
		},
		{
			name: "Envoy prefix that tokengate's matching sends elsewhere",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, append(slices.Clone(routes), mintRoute, "match")...)["prefix"] = "/minted/"
			},
			want: `tokengate selects no route for "/minted/`,
		},
		{
			name: "route to a cluster that does not exist",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, append(slices.Clone(routes), mintRoute, "route")...)["cluster"] = "no_such_cluster"
			},
			want: `cluster "no_such_cluster" is not defined in static_resources.clusters`,
		},
		{
			name: "ext_authz service cluster that does not exist",
			file: "envoy.yaml",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, append(slices.Clone(extAuthz), "grpc_service", "envoy_grpc")...)["cluster_name"] = "tokengate"
			},
			want: `cluster "tokengate" is not defined in static_resources.clusters`,
		},
		{
			name: "gRPC cluster without HTTP/2",
			file: "envoy.yaml",
			mutate: func(t *testing.T, doc map[string]any) {
				delete(digMap(t, doc, "static_resources", "clusters", 0), "typed_extension_protocol_options")
			},
			want: `cluster "tokengate_grpc" does not speak HTTP/2`,
		},
		{
			name: "fail open",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, extAuthz...)["failure_mode_allow"] = true
			},
			want: "failure_mode_allow must be false",
		},
		{
			name: "request bodies sent to tokengate",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, extAuthz...)["with_request_body"] = map[string]any{"max_request_bytes": 8192}
			},
			want: "with_request_body must be absent",
		},
		{
			name: "status_on_error not 503",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, extAuthz...)["status_on_error"] = map[string]any{"code": "Forbidden"}
			},
			want: "status_on_error must be 503",
		},
		{
			name: "ext_authz timeout shorter than tokengate's IdP wait",
			file: "envoy.yaml",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, append(slices.Clone(extAuthz), "grpc_service")...)["timeout"] = "0.5s"
			},
			want: "is not above tokengate's longest route timeout",
		},
		{
			name: "ext_authz disabled on a protected route",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, append(slices.Clone(routes), mintRoute)...)["typed_per_filter_config"] = map[string]any{
					extAuthzFilter: map[string]any{
						"@type":    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
						"disabled": true,
					},
				}
			},
			want: "ext_authz is disabled on a route to an upstream",
		},
		{
			name: "caller-supplied claim header not stripped",
			mutate: func(t *testing.T, doc map[string]any) {
				delete(digMap(t, doc, hcm...), "early_header_mutation_extensions")
			},
			want: "does not strip the caller's own x-subject",
		},
		{
			name: "HTTP service does not copy Authorization upstream",
			file: "envoy-http.yaml",
			mutate: func(t *testing.T, doc map[string]any) {
				m := digMap(t, doc, append(slices.Clone(extAuthz), "http_service", "authorization_response", "allowed_upstream_headers")...)
				m["patterns"] = digList(t, m, "patterns")[1:]
			},
			want: `allowed_upstream_headers does not copy "authorization"`,
		},
		{
			name: "HTTP service lets the caller choose the route",
			file: "envoy-http.yaml",
			mutate: func(t *testing.T, doc map[string]any) {
				m := digMap(t, doc, append(slices.Clone(extAuthz), "allowed_headers")...)
				m["patterns"] = append(digList(t, m, "patterns"), map[string]any{"prefix": "x-forwarded-"})
			},
			want: `sends the caller's own "x-forwarded-uri"`,
		},
		{
			name: "deprecated field",
			file: "envoy-http.yaml",
			mutate: func(t *testing.T, doc map[string]any) {
				ext := digMap(t, doc, extAuthz...)
				svc := digMap(t, ext, "http_service")
				svc["authorization_request"] = map[string]any{"allowed_headers": ext["allowed_headers"]}
				delete(ext, "allowed_headers")
			},
			want:      "is deprecated",
			insideAny: true,
		},
		{
			name: "no path normalization",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, hcm...)["normalize_path"] = false
			},
			want: "normalize_path must be true",
		},
		{
			name: "slashes not merged",
			mutate: func(t *testing.T, doc map[string]any) {
				delete(digMap(t, doc, hcm...), "merge_slashes")
			},
			want: "merge_slashes must be true",
		},
		{
			name: "encoded slashes kept",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, hcm...)["path_with_escaped_slashes_action"] = "KEEP_UNCHANGED"
			},
			want: "path_with_escaped_slashes_action KEEP_UNCHANGED",
		},
		{
			name: "no route refusing path parameters",
			mutate: func(t *testing.T, doc map[string]any) {
				m := digMap(t, doc, append(slices.Clone(hcm), "route_config", "virtual_hosts", 0)...)
				m["routes"] = digList(t, m, "routes")[semicolonRoute+1:]
			},
			want: `"/admin;/x" reaches`,
		},
		{
			name: "path parameters refused after a prefix route",
			mutate: func(t *testing.T, doc map[string]any) {
				rs := digList(t, doc, routes...)
				rs[semicolonRoute], rs[mintRoute] = rs[mintRoute], rs[semicolonRoute]
			},
			want: `"/mint/;x" reaches`,
		},
		{
			name: "path-parameter route blind to %3B",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, append(slices.Clone(routes), semicolonRoute, "match", "safe_regex")...)["regex"] = ".*;.*"
			},
			want: `"/admin%3B/x" reaches`,
		},
		{
			name: "path-parameter route that is not a 400",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, append(slices.Clone(routes), semicolonRoute, "direct_response")...)["status"] = 200
			},
			want: `"/admin;/x" reaches`,
		},
		{
			name: "every header sent to tokengate",
			mutate: func(t *testing.T, doc map[string]any) {
				delete(digMap(t, doc, extAuthz...), "allowed_headers")
			},
			want: "sends the caller's cookie to tokengate",
		},
		{
			name: "admin on every interface",
			mutate: func(t *testing.T, doc map[string]any) {
				digMap(t, doc, "admin", "address", "socket_address")["address"] = "0.0.0.0"
			},
			want: "admin must listen on 127.0.0.1",
		},
	}
	for _, f := range envoyFiles {
		good := yamlDoc(t, readFile(t, f.name))
		for _, c := range cases {
			if c.file != "" && c.file != f.name {
				continue
			}
			t.Run(f.name+"/"+c.name, func(t *testing.T) {
				doc := deepCopy(t, good)
				c.mutate(t, doc)
				data := toJSON(t, doc) // JSON is YAML: checkEnvoy reads it as it reads the files
				wantError(t, checkEnvoy(data, f.grpc, tg), c.want)
				if c.insideAny {
					b, err := parseBootstrap(data)
					if err != nil {
						t.Fatalf("parse: %v", err)
					}
					if err := b.ValidateAll(); err != nil {
						t.Errorf("Bootstrap.ValidateAll alone already refuses this copy, so it does not show the walk into Any: %v", err)
					}
				}
			})
		}
	}
}

// parseBootstrap reads an Envoy bootstrap as Envoy does: YAML to JSON, then proto3 JSON into the
// v3 Bootstrap, refusing unknown fields and unresolvable "@type"s (protojson unpacks every Any).
func parseBootstrap(data []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}

// validator is what protoc-gen-validate generates on every Envoy message.
type validator interface{ ValidateAll() error }

// envoyModel is what checkEnvoy collects while walking a bootstrap.
type envoyModel struct {
	refs     []clusterRef
	hcms     []located[*hcmv3.HttpConnectionManager]
	extAuthz []located[*extauthzv3.ExtAuthz]
}

// clusterRef is a cluster named by a route or a service; grpc marks gRPC services, whose
// cluster must speak HTTP/2.
type clusterRef struct {
	path, name string
	grpc       bool
}

type located[T any] struct {
	path string
	msg  T
}

// checkEnvoy returns every problem of one Envoy bootstrap; grpc says whether its ext_authz must
// use a gRPC service (context_extensions name the routes) or the HTTP service (routes chosen by
// tokengate's matching); tg is the tokengate configuration it fronts.
func checkEnvoy(data []byte, grpc bool, tg *config.Config) []error {
	b, err := parseBootstrap(data)
	if err != nil {
		return []error{err}
	}
	var errs []error
	if err := b.ValidateAll(); err != nil {
		errs = append(errs, fmt.Errorf("bootstrap: %w", err))
	}
	model := &envoyModel{}
	errs = append(errs, walk("bootstrap", b.ProtoReflect(), model)...)
	// A TLS listener has client certificates for RFC 8705 bound tokens (docs/deployment.md#deployment-security).
	tls := false
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			tls = tls || fc.GetTransportSocket() != nil
		}
	}
	for _, e := range model.extAuthz {
		if tls && !e.msg.GetIncludePeerCertificate() {
			errs = append(errs, fmt.Errorf("%s: the listener has TLS: include_peer_certificate must be true so that certificate-bound tokens can be checked", e.path))
		}
	}
	errs = append(errs, checkAdminAndListeners(b)...)
	errs = append(errs, checkClusters(b, model)...)
	if len(model.hcms) == 0 {
		errs = append(errs, errors.New("no http_connection_manager"))
	}
	for _, h := range model.hcms {
		errs = append(errs, checkHCM(h.path, h.msg, grpc, tg)...)
	}
	if len(model.extAuthz) == 0 {
		errs = append(errs, errors.New("no ext_authz configuration"))
	}
	for _, e := range model.extAuthz {
		errs = append(errs, checkExtAuthz(e.path, e.msg, grpc, tg)...)
	}
	return errs
}

// walk visits every set field of m. Each google.protobuf.Any is unpacked (its type must be
// registered), validated with ValidateAll (which does not look inside Any) and walked in turn.
// It refuses negative durations (Envoy does, though most of its duration fields carry no
// validation rule) and deprecated fields and enum values (Envoy warns, or refuses them once they
// are fatal-by-default), and collects what checkEnvoy needs.
func walk(path string, m protoreflect.Message, model *envoyModel) []error {
	var errs []error
	switch x := m.Interface().(type) {
	case *anypb.Any:
		inner, err := x.UnmarshalNew()
		if err != nil {
			return []error{fmt.Errorf("%s: cannot unpack %s: %w", path, x.GetTypeUrl(), err)}
		}
		ipath := fmt.Sprintf("%s<%s>", path, inner.ProtoReflect().Descriptor().FullName())
		if v, ok := inner.(validator); ok {
			if err := v.ValidateAll(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", ipath, err))
			}
		}
		return append(errs, walk(ipath, inner.ProtoReflect(), model)...)
	case *durationpb.Duration:
		if x.GetSeconds() < 0 || x.GetNanos() < 0 {
			errs = append(errs, fmt.Errorf("%s: negative duration %s (Envoy refuses negative durations)", path, x.AsDuration()))
		}
	case *corev3.GrpcService_EnvoyGrpc:
		model.refs = append(model.refs, clusterRef{path + ".cluster_name", x.GetClusterName(), true})
	case *corev3.HttpUri:
		model.refs = append(model.refs, clusterRef{path + ".cluster", x.GetCluster(), false})
	case *routev3.RouteAction:
		if x.GetClusterSpecifier() != nil {
			if c, ok := x.GetClusterSpecifier().(*routev3.RouteAction_Cluster); ok {
				model.refs = append(model.refs, clusterRef{path + ".cluster", c.Cluster, false})
			}
		}
		for i, wc := range x.GetWeightedClusters().GetClusters() {
			model.refs = append(model.refs, clusterRef{fmt.Sprintf("%s.weighted_clusters.clusters[%d].name", path, i), wc.GetName(), false})
		}
	case *hcmv3.HttpConnectionManager:
		model.hcms = append(model.hcms, located[*hcmv3.HttpConnectionManager]{path, x})
	case *extauthzv3.ExtAuthz:
		model.extAuthz = append(model.extAuthz, located[*extauthzv3.ExtAuthz]{path, x})
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		fpath := path + "." + string(fd.Name())
		if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
			errs = append(errs, fmt.Errorf("%s is deprecated in the Envoy API; use its replacement", fpath))
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				errs = append(errs, walkValue(fmt.Sprintf("%s[%d]", fpath, i), fd, l.Get(i), model)...)
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				errs = append(errs, walkValue(fmt.Sprintf("%s[%q]", fpath, k.String()), fd.MapValue(), mv, model)...)
				return true
			})
		default:
			errs = append(errs, walkValue(fpath, fd, v, model)...)
		}
		return true
	})
	return errs
}

func walkValue(path string, fd protoreflect.FieldDescriptor, v protoreflect.Value, model *envoyModel) []error {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return walk(path, v.Message(), model)
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			if opts, ok := ev.Options().(*descriptorpb.EnumValueOptions); ok && opts.GetDeprecated() {
				return []error{fmt.Errorf("%s: enum value %s is deprecated in the Envoy API", path, ev.Name())}
			}
		}
	}
	return nil
}

// checkAdminAndListeners: the admin interface only on loopback (it can stop Envoy and dump its
// configuration), and the gateway on :10000, the port of the compose files and the README.
func checkAdminAndListeners(b *bootstrapv3.Bootstrap) []error {
	var errs []error
	if a := b.GetAdmin().GetAddress().GetSocketAddress(); a != nil && a.GetAddress() != "127.0.0.1" {
		errs = append(errs, fmt.Errorf("admin must listen on 127.0.0.1, not %q", a.GetAddress()))
	}
	found := false
	for _, l := range b.GetStaticResources().GetListeners() {
		if l.GetAddress().GetSocketAddress().GetPortValue() == 10000 {
			found = true
		}
	}
	if !found {
		errs = append(errs, errors.New("no listener on port 10000"))
	}
	return errs
}

// checkClusters: every cluster a route or a gRPC/HTTP service names exists, the cluster of a
// gRPC service speaks HTTP/2, and each static cluster's load_assignment carries its own name.
func checkClusters(b *bootstrapv3.Bootstrap, model *envoyModel) []error {
	var errs []error
	defined := map[string]*clusterv3.Cluster{}
	for i, c := range b.GetStaticResources().GetClusters() {
		defined[c.GetName()] = c
		if la := c.GetLoadAssignment(); la != nil && la.GetClusterName() != c.GetName() {
			errs = append(errs, fmt.Errorf("static_resources.clusters[%d]: load_assignment.cluster_name %q differs from the cluster's name %q", i, la.GetClusterName(), c.GetName()))
		}
	}
	for _, r := range model.refs {
		c, ok := defined[r.name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: cluster %q is not defined in static_resources.clusters", r.path, r.name))
		case r.grpc && !speaksHTTP2(c):
			errs = append(errs, fmt.Errorf("%s: cluster %q does not speak HTTP/2, which gRPC needs (typed_extension_protocol_options %s explicit_http_config.http2_protocol_options)", r.path, r.name, httpProtocolOptions))
		}
	}
	return errs
}

const httpProtocolOptions = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// speaksHTTP2 reports whether a cluster's upstream protocol is explicitly HTTP/2.
func speaksHTTP2(c *clusterv3.Cluster) bool {
	a, ok := c.GetTypedExtensionProtocolOptions()[httpProtocolOptions]
	if !ok {
		return false
	}
	o := &upstreamhttpv3.HttpProtocolOptions{}
	if a.UnmarshalTo(o) != nil {
		return false
	}
	return o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil
}

// checkHCM checks one http_connection_manager: ext_authz before the router and the router last,
// caller-supplied claim headers stripped, and the routes against tokengate's.
func checkHCM(path string, h *hcmv3.HttpConnectionManager, grpc bool, tg *config.Config) []error {
	var errs []error
	authzAt, routerAt := -1, -1
	filters := h.GetHttpFilters()
	for i, f := range filters {
		switch {
		case f.GetName() == extAuthzFilter || isType(f.GetTypedConfig(), &extauthzv3.ExtAuthz{}):
			if authzAt < 0 {
				authzAt = i
			}
		case isType(f.GetTypedConfig(), &routerv3.Router{}):
			routerAt = i
		}
	}
	switch {
	case authzAt < 0:
		errs = append(errs, fmt.Errorf("%s.http_filters: no %s filter", path, extAuthzFilter))
	case routerAt >= 0 && authzAt > routerAt:
		errs = append(errs, fmt.Errorf("%s.http_filters: %s (#%d) comes after the router (#%d): requests would reach the upstream unchecked", path, extAuthzFilter, authzAt, routerAt))
	}
	if routerAt < 0 {
		errs = append(errs, fmt.Errorf("%s.http_filters: no router filter", path))
	} else if routerAt != len(filters)-1 {
		errs = append(errs, fmt.Errorf("%s.http_filters: the router (#%d) is not the last filter", path, routerAt))
	}

	// Route on the path the upstream serves (docs/decisions.md#path-normal-form; issue 9 item 3).
	if !h.GetNormalizePath().GetValue() {
		errs = append(errs, fmt.Errorf("%s: normalize_path must be true (dot segments and unreserved escapes resolved before routing)", path))
	}
	if !h.GetMergeSlashes() {
		errs = append(errs, fmt.Errorf("%s: merge_slashes must be true", path))
	}
	switch a := h.GetPathWithEscapedSlashesAction(); a {
	case hcmv3.HttpConnectionManager_REJECT_REQUEST, hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT:
	default:
		errs = append(errs, fmt.Errorf("%s: path_with_escaped_slashes_action %s: want REJECT_REQUEST (or UNESCAPE_AND_REDIRECT)", path, a))
	}
	errs = append(errs, checkPathParameters(path, h)...)

	// A route that sets no forward_claims would otherwise pass a caller's own x-subject upstream.
	stripped := map[string]bool{}
	for _, ext := range h.GetEarlyHeaderMutationExtensions() {
		hm := &headermutationv3.HeaderMutation{}
		if ext.GetTypedConfig().UnmarshalTo(hm) == nil {
			for _, mu := range hm.GetMutations() {
				if r := mu.GetRemove(); r != "" {
					stripped[strings.ToLower(r)] = true
				}
			}
		}
	}
	for _, hdr := range forwardClaimHeaders(tg) {
		if !stripped[hdr] {
			errs = append(errs, fmt.Errorf("%s.early_header_mutation_extensions: does not strip the caller's own %s (a forward_claims header of tokengate.yaml)", path, hdr))
		}
	}

	rc := h.GetRouteConfig()
	if rc == nil {
		return append(errs, fmt.Errorf("%s: no inline route_config", path))
	}
	reached := map[string]bool{}
	for vi, vh := range rc.GetVirtualHosts() {
		vpath := fmt.Sprintf("%s.route_config.virtual_hosts[%d]", path, vi)
		vhPerRoute, err := extAuthzPerRoute(vh.GetTypedPerFilterConfig())
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", vpath, err))
		}
		if vhPerRoute.GetDisabled() {
			errs = append(errs, fmt.Errorf("%s: ext_authz disabled for a whole virtual host", vpath))
		}
		for ri, r := range vh.GetRoutes() {
			rpath := fmt.Sprintf("%s.routes[%d] (%s)", vpath, ri, r.GetName())
			errs = append(errs, checkRoute(rpath, r, grpc, tg, reached)...)
		}
	}
	for _, r := range tg.Routes {
		if !reached[r.Name] {
			errs = append(errs, fmt.Errorf("%s: tokengate route %q is reached by no Envoy route", path, r.Name))
		}
	}
	// The catch-all is authorized too: a path no route names must find no tokengate route.
	if r := selectRoute(tg, "localhost", "/not-a-route/", "GET"); r != nil {
		errs = append(errs, fmt.Errorf("tokengate route %q matches /not-a-route/: the default route would not deny", r.Name))
	}
	return errs
}

// pathParameterProbes are paths with ";" or its escape "%3B" (path parameters, which Tomcat and
// Spring strip; Envoy's normalize_path leaves a reserved escape as it is): each must be answered
// 400 by Envoy itself, before any route could send it upstream.
var pathParameterProbes = []string{"/admin;/x", "/x/..;/admin/x", "/mint/;x", "/none/x;jsessionid=1", ";", "/admin%3B/x", "/mint/%3bx"}

// checkPathParameters evaluates the route table of h on pathParameterProbes (first matching
// route wins, as in Envoy) and reports any probe that reaches something other than a 400
// direct_response. The probes are also matched by a path without ";" to prove the route does
// not refuse ordinary paths.
func checkPathParameters(path string, h *hcmv3.HttpConnectionManager) []error {
	var errs []error
	first := func(p string) *routev3.Route {
		for _, vh := range h.GetRouteConfig().GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				if routeMatches(r.GetMatch(), p) {
					return r
				}
			}
		}
		return nil
	}
	for _, p := range pathParameterProbes {
		r := first(p)
		if r == nil || r.GetDirectResponse() == nil || r.GetDirectResponse().GetStatus() != 400 {
			errs = append(errs, fmt.Errorf("%s: %q reaches route %q, not a 400 direct_response: path parameters must be refused before routing (tokengate refuses them too, named route or not, but with 403 and after ext_authz)", path, p, r.GetName()))
		}
	}
	for _, p := range []string{"/mint/x", "/none/a.b"} {
		if r := first(p); r != nil && r.GetDirectResponse().GetStatus() == 400 {
			errs = append(errs, fmt.Errorf("%s: the ordinary path %q is refused by route %q", path, p, r.GetName()))
		}
	}
	return errs
}

// routeMatches evaluates the path part of an Envoy RouteMatch (prefix, path, safe_regex on the
// path without its query).
func routeMatches(m *routev3.RouteMatch, p string) bool {
	switch {
	case m.GetSafeRegex() != nil:
		re, err := regexp.Compile("^(?:" + m.GetSafeRegex().GetRegex() + ")$")
		return err == nil && re.MatchString(p)
	case m.GetPath() != "":
		return p == m.GetPath()
	case m.GetPathSeparatedPrefix() != "":
		return p == m.GetPathSeparatedPrefix() || strings.HasPrefix(p, m.GetPathSeparatedPrefix()+"/")
	default:
		return strings.HasPrefix(p, m.GetPrefix())
	}
}

// checkRoute checks one Envoy route: ext_authz disabled only for the health route, and the
// tokengate route it leads to (named in context_extensions for gRPC, by the Envoy route's name
// for HTTP) exists and is what tokengate's own matching selects for its prefix, so gateways that
// cannot name routes (Envoy's HTTP service, Istio, nginx, Caddy) reach the same route.
func checkRoute(rpath string, r *routev3.Route, grpc bool, tg *config.Config, reached map[string]bool) []error {
	var errs []error
	per, err := extAuthzPerRoute(r.GetTypedPerFilterConfig())
	if err != nil {
		return []error{fmt.Errorf("%s: %w", rpath, err)}
	}
	if per.GetDisabled() {
		// Only a route that answers itself may skip authorization: nothing reaches an upstream.
		if r.GetDirectResponse() == nil {
			errs = append(errs, fmt.Errorf("%s: ext_authz is disabled on a route to an upstream: only the health route (match path %s) and the routes answering themselves may skip authorization", rpath, healthPath))
		}
		return errs
	}
	name := ""
	ctx := per.GetCheckSettings().GetContextExtensions()
	switch {
	case grpc && len(ctx) > 0:
		n, ok := ctx["route"]
		if !ok {
			return append(errs, fmt.Errorf("%s: context_extensions has no \"route\" key", rpath))
		}
		if tg.Route(n) == nil {
			return append(errs, fmt.Errorf("%s: context_extensions route %q is not a route of tokengate.yaml", rpath, n))
		}
		name = n
	case !grpc && len(ctx) > 0:
		errs = append(errs, fmt.Errorf("%s: context_extensions are never sent by the HTTP service", rpath))
	case !grpc && tg.Route(r.GetName()) != nil:
		name = r.GetName()
	}
	if name == "" {
		return errs
	}
	reached[name] = true
	prefix := r.GetMatch().GetPrefix()
	if prefix == "" {
		return append(errs, fmt.Errorf("%s: leads to tokengate route %q but has no prefix match", rpath, name))
	}
	probe := prefix + "probe"
	switch got := selectRoute(tg, "localhost", probe, "GET"); {
	case got == nil:
		errs = append(errs, fmt.Errorf("%s: tokengate selects no route for %q (want %q): its match.path_prefix must cover this Envoy prefix", rpath, probe, name))
	case got.Name != name:
		errs = append(errs, fmt.Errorf("%s: tokengate selects route %q for %q, not %q", rpath, got.Name, probe, name))
	}
	return errs
}

// extAuthzPerRoute unpacks the ext_authz entry of a typed_per_filter_config, or returns nil.
func extAuthzPerRoute(m map[string]*anypb.Any) (*extauthzv3.ExtAuthzPerRoute, error) {
	a, ok := m[extAuthzFilter]
	if !ok {
		return nil, nil
	}
	per := &extauthzv3.ExtAuthzPerRoute{}
	if err := a.UnmarshalTo(per); err != nil {
		return nil, fmt.Errorf("typed_per_filter_config[%q] is not an ExtAuthzPerRoute: %w", extAuthzFilter, err)
	}
	return per, nil
}

// checkExtAuthz checks the ext_authz settings tokengate's decisions rely on.
func checkExtAuthz(path string, e *extauthzv3.ExtAuthz, grpc bool, tg *config.Config) []error {
	var errs []error
	if e.GetFailureModeAllow() {
		errs = append(errs, fmt.Errorf("%s: failure_mode_allow must be false: a broken tokengate must not let requests through", path))
	}
	if e.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		errs = append(errs, fmt.Errorf("%s: transport_api_version must be V3", path))
	}
	if e.GetStatusOnError().GetCode() != typev3.StatusCode_ServiceUnavailable {
		errs = append(errs, fmt.Errorf("%s: status_on_error must be 503 (ServiceUnavailable), as tokengate answers when it cannot decide", path))
	}
	// Cookies and other request headers are none of tokengate's business: an allow-list with
	// the credential headers only (issue 9 item 13). Envoy always sends method, host and path.
	for _, h := range []string{"authorization", "dpop"} {
		if !listMatches(e.GetAllowedHeaders(), h) {
			errs = append(errs, fmt.Errorf("%s: allowed_headers does not send %q to tokengate", path, h))
		}
	}
	if e.GetAllowedHeaders() == nil || listMatches(e.GetAllowedHeaders(), "cookie") {
		errs = append(errs, fmt.Errorf("%s: sends the caller's cookie to tokengate: list the credential headers in allowed_headers", path))
	}
	if e.GetWithRequestBody() != nil {
		errs = append(errs, fmt.Errorf("%s: with_request_body must be absent: tokengate decides on headers only", path))
	}
	var timeout time.Duration
	switch {
	case grpc && e.GetGrpcService() == nil:
		return append(errs, fmt.Errorf("%s: must use grpc_service", path))
	case !grpc && e.GetHttpService() == nil:
		return append(errs, fmt.Errorf("%s: must use http_service", path))
	case grpc:
		timeout = e.GetGrpcService().GetTimeout().AsDuration()
		if e.GetGrpcService().GetTimeout() == nil {
			timeout = 200 * time.Millisecond // Envoy's default
		}
	default:
		timeout = e.GetHttpService().GetServerUri().GetTimeout().AsDuration()
		errs = append(errs, checkHTTPService(path, e, tg)...)
	}
	if longest := longestRouteTimeout(tg); timeout <= longest {
		errs = append(errs, fmt.Errorf("%s: timeout %s is not above tokengate's longest route timeout %s: a Check waiting for an IdP would end in 503", path, timeout, longest))
	}
	return errs
}

// forwardAuthInputs are the headers tokengate's /authz reads the original request from
// (docs/decisions.md#the-allowed-response); a gateway must never pass a caller's own values of them.
var forwardAuthInputs = []string{"x-forwarded-uri", "x-forwarded-method", "x-forwarded-host", "x-original-uri", "x-original-method"}

// checkHTTPService: /authz, Authorization and the forward_claims headers copied upstream, and
// none of the headers that choose tokengate's route taken from the caller.
func checkHTTPService(path string, e *extauthzv3.ExtAuthz, tg *config.Config) []error {
	var errs []error
	hs := e.GetHttpService()
	if hs.GetPathPrefix() != "/authz" {
		errs = append(errs, fmt.Errorf("%s.http_service.path_prefix must be /authz, not %q", path, hs.GetPathPrefix()))
	}
	up := hs.GetAuthorizationResponse().GetAllowedUpstreamHeaders()
	for _, h := range append([]string{"authorization"}, forwardClaimHeaders(tg)...) {
		if !listMatches(up, h) {
			errs = append(errs, fmt.Errorf("%s.http_service.authorization_response.allowed_upstream_headers does not copy %q upstream", path, h))
		}
	}
	//lint:ignore SA1019 the deprecated field is still honoured by Envoy, so it is checked too
	for _, lm := range []*matcherv3.ListStringMatcher{e.GetAllowedHeaders(), hs.GetAuthorizationRequest().GetAllowedHeaders()} {
		for _, h := range forwardAuthInputs {
			if listMatches(lm, h) {
				errs = append(errs, fmt.Errorf("%s: sends the caller's own %q to tokengate, which would let the caller choose its route", path, h))
			}
		}
	}
	return errs
}

// listMatches evaluates an Envoy ListStringMatcher against a (lower-case) header name.
func listMatches(lm *matcherv3.ListStringMatcher, s string) bool {
	for _, p := range lm.GetPatterns() {
		v := s
		cmp := func(pat string) string { return pat }
		if p.GetIgnoreCase() {
			v = strings.ToLower(s)
			cmp = strings.ToLower
		}
		switch {
		case p.GetExact() != "" && v == cmp(p.GetExact()),
			p.GetPrefix() != "" && strings.HasPrefix(v, cmp(p.GetPrefix())),
			p.GetSuffix() != "" && strings.HasSuffix(v, cmp(p.GetSuffix())),
			p.GetContains() != "" && strings.Contains(v, cmp(p.GetContains())):
			return true
		case p.GetSafeRegex() != nil:
			if re, err := regexp.Compile("^(?:" + p.GetSafeRegex().GetRegex() + ")$"); err == nil && re.MatchString(s) {
				return true
			}
		}
	}
	return false
}

// isType reports whether a holds a message of m's type.
func isType(a *anypb.Any, m proto.Message) bool {
	return a != nil && a.MessageIs(m)
}
