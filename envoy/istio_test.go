package envoy

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/testkit"
)

// The Istio files are loaded into Istio's own API types (istio.io/api): the spec of each resource
// is decoded with protojson, which refuses unknown fields and unknown enum values, and walked for
// deprecated fields and negative durations like the Envoy files. The Kubernetes manifests are
// checked structurally (decoding them into k8s.io/api would add a large dependency for little).

const (
	istioDir     = "istio"
	meshFile     = "istio/mesh-config.yaml"
	policyFile   = "istio/authorization-policy.yaml"
	k8sTokengate = "istio/k8s/tokengate.yaml"
	k8sEcho      = "istio/k8s/echo.yaml"
	// k8sSecrets is the example of the Secrets the production manifest mounts: placeholders
	// only, kept apart so that applying tokengate.yaml never installs a usable credential.
	k8sSecrets = "istio/k8s/tokengate-secrets.example.yaml"
)

// k8sObject is the part of a Kubernetes object these checks read.
type k8sObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Data       map[string]string `json:"data"`
	StringData map[string]string `json:"stringData"`
	Spec       json.RawMessage   `json:"spec"`
}

type deploymentSpec struct {
	Replicas int
	Selector struct{ MatchLabels map[string]string }
	Template struct {
		Metadata struct{ Labels map[string]string }
		Spec     struct {
			AutomountServiceAccountToken *bool
			SecurityContext              struct {
				RunAsNonRoot   *bool
				RunAsUser      *int64
				SeccompProfile struct{ Type string }
			}
			Containers []container
			Volumes    []struct {
				Name      string
				ConfigMap *struct{ Name string }
				Secret    *struct {
					SecretName  string
					DefaultMode *int
				}
			}
		}
	}
}

type container struct {
	Name  string
	Image string
	Args  []string
	Ports []struct {
		Name          string
		ContainerPort int
	}
	LivenessProbe, ReadinessProbe *struct {
		HTTPGet *struct {
			Path string
			Port any
		}
	}
	SecurityContext *struct {
		RunAsNonRoot             *bool
		AllowPrivilegeEscalation *bool
		ReadOnlyRootFilesystem   *bool
		Capabilities             *struct{ Drop []string }
	}
	Resources struct {
		Requests map[string]string
		Limits   map[string]string
	}
	VolumeMounts []struct {
		Name      string
		MountPath string
		SubPath   string
		ReadOnly  bool
	}
}

type serviceSpec struct {
	Selector map[string]string
	Ports    []struct {
		Name        string
		Port        int
		TargetPort  any
		AppProtocol string
	}
}

// k8sObjects decodes every document of a manifest file.
func k8sObjects(t *testing.T, file string) []k8sObject {
	t.Helper()
	var out []k8sObject
	for _, doc := range yamlDocs(t, readFile(t, file)) {
		var o k8sObject
		if err := json.Unmarshal(toJSON(t, doc), &o); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, o)
	}
	return out
}

func findObject(t *testing.T, objs []k8sObject, kind, name string) k8sObject {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			return o
		}
	}
	t.Fatalf("no %s %s", kind, name)
	return k8sObject{}
}

func decodeSpec[T any](t *testing.T, o k8sObject) T {
	t.Helper()
	var s T
	if err := json.Unmarshal(o.Spec, &s); err != nil {
		t.Fatalf("%s %s: spec: %v", o.Kind, o.Metadata.Name, err)
	}
	return s
}

// loadMeshConfig decodes meshConfig of an IstioOperator into Istio's MeshConfig.
func loadMeshConfig(doc map[string]any) (*meshv1alpha1.MeshConfig, error) {
	if doc["kind"] != "IstioOperator" {
		return nil, fmt.Errorf("kind %v, want IstioOperator", doc["kind"])
	}
	spec, _ := doc["spec"].(map[string]any)
	js, err := json.Marshal(spec["meshConfig"])
	if err != nil {
		return nil, err
	}
	m := &meshv1alpha1.MeshConfig{}
	if err := protojson.Unmarshal(js, m); err != nil {
		return nil, fmt.Errorf("meshConfig: %w", err)
	}
	return m, nil
}

// loadPolicy decodes an AuthorizationPolicy's spec into Istio's type (security.istio.io v1 and
// v1beta1 share it).
func loadPolicy(doc map[string]any) (*securityv1beta1.AuthorizationPolicy, error) {
	if doc["kind"] != "AuthorizationPolicy" || !slices.Contains([]any{"security.istio.io/v1", "security.istio.io/v1beta1"}, doc["apiVersion"]) {
		return nil, fmt.Errorf("not a security.istio.io AuthorizationPolicy: %v %v", doc["apiVersion"], doc["kind"])
	}
	js, err := json.Marshal(doc["spec"])
	if err != nil {
		return nil, err
	}
	p := &securityv1beta1.AuthorizationPolicy{}
	if err := protojson.Unmarshal(js, p); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	return p, nil
}

// istioWalk reports deprecated fields and negative durations of an Istio message.
func istioWalk(name string, m proto.Message) []error {
	return walk(name, m.ProtoReflect(), &envoyModel{})
}

// loadIstioTokengate validates the tokengate.yaml of the ConfigMap with tokengate's own rules,
// the Secret-mounted files it names replaced by test files at the same names.
func loadIstioTokengate(t *testing.T, cm k8sObject) (*config.Config, []string) {
	t.Helper()
	data := cm.Data["tokengate.yaml"]
	if data == "" {
		t.Fatal("ConfigMap has no tokengate.yaml")
	}
	dir := t.TempDir()
	var files []string
	for _, m := range regexp.MustCompile(`(?m)^\s*-?\s*[a-z_]*file:\s*"?(/etc/tokengate/[A-Za-z0-9._/-]+)`).FindAllStringSubmatch(data, -1) {
		files = append(files, m[1])
	}
	if len(files) == 0 {
		t.Fatal("the ConfigMap's tokengate.yaml reads no mounted file: where do its key and secrets come from?")
	}
	for _, f := range files {
		local := filepath.Join(dir, strings.TrimPrefix(f, "/etc/tokengate/"))
		if strings.HasSuffix(f, ".pem") {
			testkit.WriteP256Key(t, local)
		} else {
			if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(local, []byte("a-test-secret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg, err := loadConfig(t, []byte(data), map[string]string{"/etc/tokengate/": dir + "/"}, nil)
	if err != nil {
		t.Fatalf("the ConfigMap's tokengate.yaml does not pass tokengate's validation:\n%v", err)
	}
	return cfg, files
}

// TestIstioFiles checks the mesh extension providers and the AuthorizationPolicy against Istio's
// API types and against the tokengate they point at: its Service, ports, routes and headers.
func TestIstioFiles(t *testing.T) {
	objs := k8sObjects(t, k8sTokengate)
	svc := findObject(t, objs, "Service", "tokengate")
	svcSpec := decodeSpec[serviceSpec](t, svc)
	fqdn := svc.Metadata.Name + "." + svc.Metadata.Namespace + ".svc.cluster.local"
	port := func(name string) uint32 {
		for _, p := range svcSpec.Ports {
			if p.Name == name {
				return uint32(p.Port)
			}
		}
		t.Errorf("Service tokengate has no port %s", name)
		return 0
	}
	cfg, _ := loadIstioTokengate(t, findObject(t, objs, "ConfigMap", "tokengate-config"))

	mesh, err := loadMeshConfig(yamlDoc(t, readFile(t, meshFile)))
	if err != nil {
		t.Fatalf("%s: %v", meshFile, err)
	}
	noErrors(t, istioWalk("meshConfig", mesh))
	providers := map[string]*meshv1alpha1.MeshConfig_ExtensionProvider{}
	for _, p := range mesh.GetExtensionProviders() {
		providers[p.GetName()] = p
	}

	t.Run("gRPC provider", func(t *testing.T) {
		g := providers["tokengate-grpc"].GetEnvoyExtAuthzGrpc()
		if g == nil {
			t.Fatal("no envoyExtAuthzGrpc provider tokengate-grpc")
		}
		if g.GetService() != fqdn || g.GetPort() != port("grpc") {
			t.Errorf("tokengate-grpc points at %s:%d, the Service is %s:%d", g.GetService(), g.GetPort(), fqdn, port("grpc"))
		}
		if g.GetFailOpen() {
			t.Error("tokengate-grpc: failOpen must be false")
		}
		if g.GetStatusOnError() != "503" {
			t.Errorf("tokengate-grpc: statusOnError %q, want 503", g.GetStatusOnError())
		}
		if d, longest := g.GetTimeout().AsDuration(), longestRouteTimeout(cfg); d <= longest {
			t.Errorf("tokengate-grpc: timeout %s is not above tokengate's longest route timeout %s", d, longest)
		}
	})

	t.Run("HTTP provider", func(t *testing.T) {
		h := providers["tokengate-http"].GetEnvoyExtAuthzHttp()
		if h == nil {
			t.Fatal("no envoyExtAuthzHttp provider tokengate-http")
		}
		// /authz lives on authz_addr (docs/deployment.md#deployment-security), the Service port "authz".
		if h.GetService() != fqdn || h.GetPort() != port("authz") {
			t.Errorf("tokengate-http points at %s:%d, the Service's authz port is %s:%d", h.GetService(), h.GetPort(), fqdn, port("authz"))
		}
		if got := addrPort(t, cfg.Server.AuthzAddr); got != port("authz") {
			t.Errorf("tokengate serves /authz on %q, the Service's authz port is %d", cfg.Server.AuthzAddr, port("authz"))
		}
		if cfg.Server.ForwardAuthHeaders != config.ForwardAuthRequest {
			t.Errorf("forward_auth_headers %q: Envoy's HTTP service with pathPrefix /authz sends the original request itself (want request)", cfg.Server.ForwardAuthHeaders)
		}
		if h.GetPathPrefix() != "/authz" {
			t.Errorf("tokengate-http: pathPrefix %q, want /authz", h.GetPathPrefix())
		}
		if h.GetFailOpen() || h.GetStatusOnError() != "503" {
			t.Error("tokengate-http: failOpen must be false and statusOnError 503")
		}
		if d, longest := h.GetTimeout().AsDuration(), longestRouteTimeout(cfg); d <= longest {
			t.Errorf("tokengate-http: timeout %s is not above tokengate's longest route timeout %s", d, longest)
		}
		for _, hdr := range append([]string{"authorization"}, forwardClaimHeaders(cfg)...) {
			if !containsFold(h.GetHeadersToUpstreamOnAllow(), hdr) {
				t.Errorf("tokengate-http: headersToUpstreamOnAllow lacks %s", hdr)
			}
		}
		if !containsFold(h.GetIncludeRequestHeadersInCheck(), "authorization") {
			t.Error("tokengate-http: includeRequestHeadersInCheck lacks authorization")
		}
		for _, hdr := range forwardAuthInputs {
			if containsFold(h.GetIncludeRequestHeadersInCheck(), hdr) {
				t.Errorf("tokengate-http: includeRequestHeadersInCheck sends the caller's own %s, which would let it choose tokengate's route", hdr)
			}
		}
		if !containsFold(h.GetHeadersToDownstreamOnDeny(), "www-authenticate") {
			t.Error("tokengate-http: headersToDownstreamOnDeny lacks www-authenticate")
		}
	})

	t.Run("AuthorizationPolicy", func(t *testing.T) {
		doc := namedDoc(t, policyFile, "AuthorizationPolicy", "echo-tokengate")
		p, err := loadPolicy(doc)
		if err != nil {
			t.Fatalf("%s: %v", policyFile, err)
		}
		noErrors(t, istioWalk("AuthorizationPolicy", p))
		if p.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
			t.Errorf("action %s, want CUSTOM", p.GetAction())
		}
		if _, ok := providers[p.GetProvider().GetName()]; !ok {
			t.Errorf("provider %q is not an extension provider of %s", p.GetProvider().GetName(), meshFile)
		}
		if len(p.GetRules()) == 0 {
			t.Error("no rules: a CUSTOM policy without rules never calls tokengate")
		}
		echo := findObject(t, k8sObjects(t, k8sEcho), "Deployment", "echo")
		echoSpec := decodeSpec[deploymentSpec](t, echo)
		meta, _ := doc["metadata"].(map[string]any)
		if str(meta["namespace"]) != echo.Metadata.Namespace {
			t.Errorf("the policy is in namespace %v, the echo workload in %s", meta["namespace"], echo.Metadata.Namespace)
		}
		for k, v := range p.GetSelector().GetMatchLabels() {
			if echoSpec.Template.Metadata.Labels[k] != v {
				t.Errorf("selector %s=%s does not select the echo pods %v", k, v, echoSpec.Template.Metadata.Labels)
			}
		}
	})

	t.Run("routes by match", func(t *testing.T) {
		// Istio sends no context_extensions: each mode's path must select its route.
		for name := range modeRoutes {
			r := selectRoute(cfg, "echo.demo.svc.cluster.local:80", "/"+name+"/x", "GET")
			if r == nil || r.Name != name {
				t.Errorf("/%s/x selects %v, want route %s", name, r, name)
			}
		}
		if r := selectRoute(cfg, "echo.demo", "/other", "GET"); r != nil {
			t.Errorf("/other selects route %s: unlisted paths must be denied", r.Name)
		}
	})

	t.Run("broken copies", func(t *testing.T) {
		mdoc := yamlDoc(t, readFile(t, meshFile))
		bad := deepCopy(t, mdoc)
		digMap(t, digList(t, bad, "spec", "meshConfig", "extensionProviders")[0], "envoyExtAuthzGrpc")["failClosed"] = true
		if _, err := loadMeshConfig(bad); err == nil || !strings.Contains(err.Error(), "failClosed") {
			t.Errorf("an unknown provider field loaded: %v", err)
		}
		pdoc := namedDoc(t, policyFile, "AuthorizationPolicy", "echo-tokengate")
		bad = deepCopy(t, pdoc)
		digMap(t, bad, "spec")["action"] = "CUSTOMISED"
		if _, err := loadPolicy(bad); err == nil || !strings.Contains(err.Error(), "CUSTOMISED") {
			t.Errorf("an unknown action loaded: %v", err)
		}
		bad = deepCopy(t, pdoc)
		digMap(t, bad, "spec", "provider")["names"] = "x"
		if _, err := loadPolicy(bad); err == nil || !strings.Contains(err.Error(), "names") {
			t.Errorf("an unknown policy field loaded: %v", err)
		}
	})
}

// TestKubernetesManifests checks the Deployment, Service, ConfigMap and Secrets of tokengate:
// probes, ports, a non-root read-only container without capabilities, resources, and every file
// the configuration reads mounted from the object that holds it.
func TestKubernetesManifests(t *testing.T) {
	objs := k8sObjects(t, k8sTokengate)
	dep := findObject(t, objs, "Deployment", "tokengate")
	spec := decodeSpec[deploymentSpec](t, dep)
	if len(spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(spec.Template.Spec.Containers))
	}
	c := spec.Template.Spec.Containers[0]
	ps := spec.Template.Spec

	t.Run("ports and probes", func(t *testing.T) {
		ports := map[string]int{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		if ports["grpc"] != 9001 || ports["http"] != 8080 || ports["authz"] != 9002 || ports["metrics"] != 9090 {
			t.Errorf("container ports %v, want grpc 9001, http 8080, authz 9002 and metrics 9090", ports)
		}
		for name, probe := range map[string]*struct {
			HTTPGet *struct {
				Path string
				Port any
			}
		}{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
			if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != name || fmt.Sprint(probe.HTTPGet.Port) != "http" {
				t.Errorf("probe on %s: want httpGet %s on port http", name, name)
			}
		}
		svc := decodeSpec[serviceSpec](t, findObject(t, objs, "Service", "tokengate"))
		for k, v := range svc.Selector {
			if spec.Template.Metadata.Labels[k] != v {
				t.Errorf("Service selector %s=%s does not select the pods", k, v)
			}
		}
		for _, p := range svc.Ports {
			if fmt.Sprint(p.TargetPort) != p.Name || ports[p.Name] != p.Port {
				t.Errorf("Service port %s: %d -> %v, container port %d", p.Name, p.Port, p.TargetPort, ports[p.Name])
			}
			if p.Name == "grpc" && p.AppProtocol != "grpc" {
				t.Error("Service port grpc must declare appProtocol grpc (HTTP/2 for Envoy and Istio)")
			}
		}
		for k, v := range spec.Selector.MatchLabels {
			if spec.Template.Metadata.Labels[k] != v {
				t.Errorf("Deployment selector %s=%s does not match its pod labels", k, v)
			}
		}
	})

	t.Run("security context", func(t *testing.T) {
		isTrue := func(b *bool) bool { return b != nil && *b }
		isFalse := func(b *bool) bool { return b != nil && !*b }
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Fatal("container has no securityContext")
		case !isTrue(sc.RunAsNonRoot) && !isTrue(ps.SecurityContext.RunAsNonRoot):
			t.Error("runAsNonRoot must be true")
		case !isFalse(sc.AllowPrivilegeEscalation):
			t.Error("allowPrivilegeEscalation must be false")
		case !isTrue(sc.ReadOnlyRootFilesystem):
			t.Error("readOnlyRootFilesystem must be true")
		case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
			t.Error("capabilities.drop must hold ALL")
		}
		if u := ps.SecurityContext.RunAsUser; u == nil || *u == 0 {
			t.Error("the pod must run as a non-zero uid (the image's 65532)")
		}
		if !isFalse(ps.AutomountServiceAccountToken) {
			t.Error("automountServiceAccountToken must be false: tokengate never calls the Kubernetes API")
		}
		if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
			t.Errorf("resources must request cpu and memory and limit memory: %+v", c.Resources)
		}
	})

	t.Run("mounted files", func(t *testing.T) {
		cm := findObject(t, objs, "ConfigMap", "tokengate-config")
		_, files := loadIstioTokengate(t, cm)
		// --config is a file of the ConfigMap's volume.
		configPath := ""
		for i, a := range c.Args {
			if a == "--config" && i+1 < len(c.Args) {
				configPath = c.Args[i+1]
			}
		}
		if len(c.Args) == 0 || c.Args[0] != "serve" || configPath == "" {
			t.Fatalf("args %v: want serve --config FILE", c.Args)
		}
		// The Secrets are not in the production file: their shape is in the example file.
		all := append(slices.Clone(objs), k8sObjects(t, k8sSecrets)...)
		for _, f := range append([]string{configPath}, files...) {
			src := mountSource(t, all, spec, c, f)
			if src == nil {
				continue
			}
			if _, ok := src.Data[path.Base(f)]; !ok {
				if _, ok := src.StringData[path.Base(f)]; !ok {
					t.Errorf("%s is mounted from %s %s, which has no key %s", f, src.Kind, src.Metadata.Name, path.Base(f))
				}
			}
		}
		for _, m := range c.VolumeMounts {
			if m.SubPath != "" {
				t.Errorf("volume %s is mounted with subPath: Kubernetes never updates it, so a changed ConfigMap or rotated Secret would not reach the pod", m.Name)
			}
			if !m.ReadOnly {
				t.Errorf("volume %s is mounted writable", m.Name)
			}
		}
	})

	t.Run("no credential in the production manifest", func(t *testing.T) {
		// The placeholder secret of a shipped manifest works as a real credential once applied
		// (issue 9, item 13): Secrets and demo clients live in the example file only.
		for _, o := range objs {
			if o.Kind == "Secret" {
				t.Errorf("%s ships Secret %s: keep Secrets in %s", k8sTokengate, o.Metadata.Name, k8sSecrets)
			}
		}
		if strings.Contains(string(readFile(t, k8sTokengate)), "REPLACE-ME") {
			t.Errorf("%s holds a REPLACE-ME placeholder", k8sTokengate)
		}
		cfg, _ := loadIstioTokengate(t, findObject(t, objs, "ConfigMap", "tokengate-config"))
		if cfg.Issuer != nil && len(cfg.Issuer.Clients) > 0 {
			t.Errorf("the ConfigMap registers issuer clients %v: a demo client is a credential anyone reading the file holds", clientIDs(cfg))
		}
	})

	t.Run("example secrets are placeholders", func(t *testing.T) {
		n := 0
		for _, o := range k8sObjects(t, k8sSecrets) {
			if o.Kind != "Secret" {
				t.Errorf("%s holds a %s: it is for the Secrets' shape only", k8sSecrets, o.Kind)
				continue
			}
			n++
			if len(o.Data) > 0 {
				t.Errorf("Secret %s carries data: ship placeholders in stringData only", o.Metadata.Name)
			}
			for k, v := range o.StringData {
				if !strings.Contains(v, "REPLACE-ME") {
					t.Errorf("Secret %s key %s is not marked as a placeholder (REPLACE-ME)", o.Metadata.Name, k)
				}
			}
		}
		if n == 0 {
			t.Error("no Secret")
		}
	})
}

// mountSource returns the ConfigMap or Secret the file at p comes from in container c, failing
// when no volume is mounted on its directory.
func mountSource(t *testing.T, objs []k8sObject, spec deploymentSpec, c container, p string) *k8sObject {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath != path.Dir(p) {
			continue
		}
		for _, v := range spec.Template.Spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			switch {
			case v.ConfigMap != nil:
				o := findObject(t, objs, "ConfigMap", v.ConfigMap.Name)
				return &o
			case v.Secret != nil:
				o := findObject(t, objs, "Secret", v.Secret.SecretName)
				return &o
			}
		}
		t.Errorf("mount %s has no ConfigMap or Secret volume", m.Name)
		return nil
	}
	t.Errorf("%s: no volume is mounted on %s", p, path.Dir(p))
	return nil
}

// gatewayExchangeFile is the ingress gateway's CUSTOM policy for the token-exchange route.
const gatewayExchangeFile = "istio/gateway-token-exchange.yaml"

// TestIstioGatewayTokenExchange checks the mesh-edge delegation example: the ingress gateway's
// CUSTOM policy loads into Istio's API type and names a provider of the mesh config, and each
// path it sends to tokengate selects a token_exchange route (RFC 8693) of the ConfigMap, which
// passes tokengate's own validation with its client secret read from a Secret-mounted file
// (TestKubernetesManifests checks that the Secret has the key), and whose IdP timeout leaves
// the gateway time to hear tokengate's answer.
func TestIstioGatewayTokenExchange(t *testing.T) {
	objs := k8sObjects(t, k8sTokengate)
	cfg, files := loadIstioTokengate(t, findObject(t, objs, "ConfigMap", "tokengate-config"))
	mesh, err := loadMeshConfig(yamlDoc(t, readFile(t, meshFile)))
	if err != nil {
		t.Fatalf("%s: %v", meshFile, err)
	}
	var grpcTimeout time.Duration
	names := map[string]bool{}
	for _, p := range mesh.GetExtensionProviders() {
		names[p.GetName()] = true
		if g := p.GetEnvoyExtAuthzGrpc(); g != nil && p.GetName() == "tokengate-grpc" {
			grpcTimeout = g.GetTimeout().AsDuration()
		}
	}

	doc := namedDoc(t, gatewayExchangeFile, "AuthorizationPolicy", "ingress-delegate-tokengate")
	p, err := loadPolicy(doc)
	if err != nil {
		t.Fatalf("%s: %v", gatewayExchangeFile, err)
	}
	noErrors(t, istioWalk("AuthorizationPolicy", p))
	if p.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
		t.Errorf("action %s, want CUSTOM", p.GetAction())
	}
	if !names[p.GetProvider().GetName()] {
		t.Errorf("provider %q is not an extension provider of %s", p.GetProvider().GetName(), meshFile)
	}
	meta, _ := doc["metadata"].(map[string]any)
	if str(meta["namespace"]) != "istio-system" || p.GetSelector().GetMatchLabels()["istio"] != "ingressgateway" {
		t.Errorf("the policy selects %v in %v, want the ingress gateway (istio: ingressgateway in istio-system)",
			p.GetSelector().GetMatchLabels(), meta["namespace"])
	}

	var paths []string
	for _, r := range p.GetRules() {
		for _, to := range r.GetTo() {
			paths = append(paths, to.GetOperation().GetPaths()...)
		}
	}
	if len(paths) == 0 {
		t.Fatal("the policy names no path: a CUSTOM rule without paths would send every request through the exchange")
	}
	for _, pth := range paths {
		r := selectRoute(cfg, "api.example.com", strings.TrimSuffix(pth, "*")+"x", "GET")
		if r == nil {
			t.Errorf("path %s selects no tokengate route: every request would be denied", pth)
			continue
		}
		te := r.Upstream.TokenExchange
		if te == nil {
			t.Errorf("path %s selects route %s of mode %s, want token_exchange", pth, r.Name, r.Upstream.Mode())
			continue
		}
		if r.Authenticate.JWT == nil {
			t.Errorf("route %s: token_exchange needs the caller's JWT as subject_token", r.Name)
		}
		if te.Audience == "" && te.Resource == "" {
			t.Errorf("route %s: the exchange names no audience or resource: the IdP cannot tell whom the token is for", r.Name)
		}
		if !slices.Contains(files, "/etc/tokengate/secrets/exchange-client-secret") {
			t.Errorf("route %s: its client secret is not read from the mounted Secret file", r.Name)
		}
		if te.Timeout.Std() <= 0 || te.Timeout.Std() >= grpcTimeout {
			t.Errorf("route %s: exchange timeout %s must be set and below the gateway's ext_authz timeout %s", r.Name, te.Timeout.Std(), grpcTimeout)
		}
	}
}
