package envoy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/tokengate/tokengate/internal/app"
	"github.com/tokengate/tokengate/internal/config"
)

// Who may reach tokengate under Kubernetes and Istio (docs/deployment.md#deployment-security; issue 9,
// item 13): the gRPC port and /authz hand out upstream credentials to whoever calls them, so the
// shipped manifests must let only the gateways reach them, at three layers (NetworkPolicy,
// PeerAuthentication STRICT, an ALLOW AuthorizationPolicy naming the gateways' principals), and
// the protected workload's policy must cover every port it serves. The NetworkPolicy and the
// PodDisruptionBudget are plain Kubernetes objects, checked as JSON-shaped maps (k8s.io/api
// would be a large dependency for little); the Istio objects decode into istio.io/api types.

// ingressGatewayPrincipal is the SPIFFE identity (without the spiffe:// scheme, as Istio writes
// principals) of Istio's default ingress gateway.
const ingressGatewayPrincipal = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"

// k8sSet is every shipped Kubernetes/Istio document the access checks read, as maps, so that a
// broken copy can change any of them.
type k8sSet struct {
	tokengate []map[string]any // istio/k8s/tokengate.yaml
	echo      []map[string]any // istio/k8s/echo.yaml
	policies  []map[string]any // istio/authorization-policy.yaml
	mesh      map[string]any   // istio/mesh-config.yaml
}

func loadK8sSet(t *testing.T) k8sSet {
	t.Helper()
	return k8sSet{
		tokengate: yamlDocs(t, readFile(t, k8sTokengate)),
		echo:      yamlDocs(t, readFile(t, k8sEcho)),
		policies:  yamlDocs(t, readFile(t, policyFile)),
		mesh:      yamlDoc(t, readFile(t, meshFile)),
	}
}

func (s k8sSet) copy(t *testing.T) k8sSet {
	t.Helper()
	cp := func(docs []map[string]any) []map[string]any {
		var out []map[string]any
		for _, d := range docs {
			out = append(out, deepCopy(t, d))
		}
		return out
	}
	return k8sSet{cp(s.tokengate), cp(s.echo), cp(s.policies), deepCopy(t, s.mesh)}
}

// docOf returns the document of kind and name, or nil.
func docOf(docs []map[string]any, kind, name string) map[string]any {
	for _, d := range docs {
		meta, _ := d["metadata"].(map[string]any)
		if str(d["kind"]) == kind && str(meta["name"]) == name {
			return d
		}
	}
	return nil
}

func docsOfKind(docs []map[string]any, kind string) []map[string]any {
	var out []map[string]any
	for _, d := range docs {
		if str(d["kind"]) == kind {
			out = append(out, d)
		}
	}
	return out
}

// namedDoc returns one document of a multi-document file, failing when it is missing.
func namedDoc(t *testing.T, file, kind, name string) map[string]any {
	t.Helper()
	d := docOf(yamlDocs(t, readFile(t, file)), kind, name)
	if d == nil {
		t.Fatalf("%s: no %s %s", file, kind, name)
	}
	return d
}

// addrPort returns the port of a listen address such as ":9002".
func addrPort(t *testing.T, addr string) uint32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("address %q: %v", addr, err)
		return 0
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		t.Errorf("address %q: %v", addr, err)
	}
	return uint32(n)
}

func clientIDs(cfg *config.Config) []string {
	var ids []string
	for _, c := range cfg.Issuer.Clients {
		ids = append(ids, c.ClientID)
	}
	return ids
}

func namespaceOf(d map[string]any) string {
	meta, _ := d["metadata"].(map[string]any)
	return str(meta["namespace"])
}

func stringMap(v any) map[string]string {
	m, _ := v.(map[string]any)
	out := map[string]string{}
	for k, x := range m {
		out[k] = fmt.Sprint(x)
	}
	return out
}

// selects reports whether matchLabels sel (non-empty) selects pods labelled labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func at(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func list(v any) []any { l, _ := v.([]any); return l }

// podInfo is what the checks need of a Deployment: namespace, pod labels, replicas, service
// account and the declared container ports by name.
type podInfo struct {
	namespace, serviceAccount string
	labels                    map[string]string
	replicas                  int
	ports                     map[string]int
	spec                      map[string]any // the pod template's spec
}

func deploymentInfo(d map[string]any) podInfo {
	pi := podInfo{namespace: namespaceOf(d), ports: map[string]int{}}
	pi.labels = stringMap(at(d, "spec", "template", "metadata", "labels"))
	if r, ok := at(d, "spec", "replicas").(float64); ok {
		pi.replicas = int(r)
	}
	pi.spec, _ = at(d, "spec", "template", "spec").(map[string]any)
	pi.serviceAccount = str(pi.spec["serviceAccountName"])
	for _, c := range list(pi.spec["containers"]) {
		for _, p := range list(at(c, "ports")) {
			if n, ok := at(p, "containerPort").(float64); ok {
				pi.ports[str(at(p, "name"))] = int(n)
			}
		}
	}
	return pi
}

// checkAccess returns every way the shipped manifests let something other than the gateways
// reach tokengate's gateway ports, leave a port of the protected workload unchecked, or let one
// node drain stop tokengate.
func checkAccess(s k8sSet, cfg *config.Config, grpcPort, authzPort, httpPort, metricsPort uint32) []error {
	var errs []error
	dep := docOf(s.tokengate, "Deployment", "tokengate")
	if dep == nil {
		return []error{errors.New("no Deployment tokengate")}
	}
	tg := deploymentInfo(dep)
	echoDep := docOf(s.echo, "Deployment", "echo")
	if echoDep == nil {
		return []error{errors.New("no Deployment echo")}
	}
	echo := deploymentInfo(echoDep)
	gatewayPorts := []uint32{grpcPort, authzPort}
	echoPrincipal := "cluster.local/ns/" + echo.namespace + "/sa/" + echo.serviceAccount
	if echo.serviceAccount == "" {
		errs = append(errs, errors.New("the echo Deployment has no serviceAccountName: its sidecar, which calls ext_authz, has no principal of its own to allow"))
	}

	// Listeners: /authz and /metrics each on their own port (docs/deployment.md#deployment-security, issue 9 item 2).
	if authzPort == 0 || authzPort == httpPort {
		errs = append(errs, fmt.Errorf("server.authz_addr must put /authz on its own port (got %d, http_addr %d)", authzPort, httpPort))
	}
	if metricsPort == 0 || metricsPort == httpPort || metricsPort == authzPort {
		errs = append(errs, fmt.Errorf("server.metrics_addr must put /metrics on its own port (got %d)", metricsPort))
	}

	errs = append(errs, checkNetworkPolicy(s, tg, echo, gatewayPorts, metricsPort)...)

	// PeerAuthentication STRICT for tokengate: only workloads with a mesh certificate connect.
	strict := false
	for _, d := range docsOfKind(s.tokengate, "PeerAuthentication") {
		pa := &securityv1beta1.PeerAuthentication{}
		if err := protoSpec(d, pa); err != nil {
			errs = append(errs, fmt.Errorf("PeerAuthentication: %w", err))
			continue
		}
		if namespaceOf(d) != tg.namespace {
			continue
		}
		if sel := pa.GetSelector().GetMatchLabels(); len(sel) > 0 && !selects(sel, tg.labels) {
			continue
		}
		if pa.GetMtls().GetMode() != securityv1beta1.PeerAuthentication_MutualTLS_STRICT {
			errs = append(errs, fmt.Errorf("PeerAuthentication %v: mtls mode %s, want STRICT", at(d, "metadata", "name"), pa.GetMtls().GetMode()))
			continue
		}
		for port, m := range pa.GetPortLevelMtls() {
			if m.GetMode() != securityv1beta1.PeerAuthentication_MutualTLS_STRICT && slices.Contains(gatewayPorts, port) {
				errs = append(errs, fmt.Errorf("PeerAuthentication: port %d is not STRICT", port))
			}
		}
		strict = true
	}
	if !strict {
		errs = append(errs, fmt.Errorf("no PeerAuthentication with mtls STRICT selects tokengate in namespace %s", tg.namespace))
	}

	errs = append(errs, checkTokengateAllow(s, tg, gatewayPorts, echoPrincipal)...)
	errs = append(errs, checkEchoPolicies(s, echo)...)

	// Mesh: merge slashes before routing and authorization.
	mesh, err := loadMeshConfig(s.mesh)
	if err != nil {
		errs = append(errs, err)
	} else if n := mesh.GetPathNormalization().GetNormalization(); n != meshv1alpha1.MeshConfig_ProxyPathNormalization_MERGE_SLASHES && n != meshv1alpha1.MeshConfig_ProxyPathNormalization_DECODE_AND_MERGE_SLASHES {
		errs = append(errs, fmt.Errorf("meshConfig.pathNormalization.normalization %s: want MERGE_SLASHES", n))
	}

	// Availability: tokengate fails closed, so two replicas on two nodes and a disruption budget.
	if tg.replicas < 2 {
		errs = append(errs, fmt.Errorf("tokengate runs %d replica(s): want at least 2", tg.replicas))
	}
	spread := false
	for _, c := range list(tg.spec["topologySpreadConstraints"]) {
		if str(at(c, "topologyKey")) == "kubernetes.io/hostname" && selects(stringMap(at(c, "labelSelector", "matchLabels")), tg.labels) {
			spread = true
		}
	}
	if !spread {
		errs = append(errs, errors.New("no topologySpreadConstraint spreads the tokengate pods over nodes (kubernetes.io/hostname)"))
	}
	pdb := false
	for _, d := range docsOfKind(s.tokengate, "PodDisruptionBudget") {
		if str(d["apiVersion"]) != "policy/v1" || namespaceOf(d) != tg.namespace || !selects(stringMap(at(d, "spec", "selector", "matchLabels")), tg.labels) {
			continue
		}
		minAv, hasMin := at(d, "spec", "minAvailable").(float64)
		maxUn, hasMax := at(d, "spec", "maxUnavailable").(float64)
		switch {
		case hasMin && (minAv < 1 || int(minAv) >= tg.replicas):
			errs = append(errs, fmt.Errorf("PodDisruptionBudget minAvailable %v: want at least 1 and fewer than the %d replicas (or no node could ever drain)", minAv, tg.replicas))
		case hasMax && (maxUn < 1 || int(maxUn) >= tg.replicas):
			errs = append(errs, fmt.Errorf("PodDisruptionBudget maxUnavailable %v: want at least 1 and fewer than the %d replicas", maxUn, tg.replicas))
		case !hasMin && !hasMax:
			errs = append(errs, errors.New("PodDisruptionBudget sets neither minAvailable nor maxUnavailable (as a number)"))
		default:
			pdb = true
		}
	}
	if !pdb {
		errs = append(errs, errors.New("no policy/v1 PodDisruptionBudget selects the tokengate pods"))
	}

	// Images pinned to a tag, never :latest.
	pinned := regexp.MustCompile(`^[a-z0-9./_-]+:[A-Za-z0-9._-]+$`)
	for _, pi := range []podInfo{tg, echo} {
		for _, c := range list(pi.spec["containers"]) {
			if img := str(at(c, "image")); !pinned.MatchString(img) || strings.HasSuffix(img, ":latest") || strings.HasSuffix(img, ":dev") {
				errs = append(errs, fmt.Errorf("container %v: image %q is not pinned to a release tag", at(c, "name"), img))
			}
		}
	}
	return errs
}

// checkNetworkPolicy: a NetworkPolicy selects the tokengate pods for Ingress, every rule that
// admits a gateway port names only the ingress gateway pods or the protected workload's
// namespace, some rule does admit them, and /metrics is not open to all.
func checkNetworkPolicy(s k8sSet, tg, echo podInfo, gatewayPorts []uint32, metricsPort uint32) []error {
	var errs []error
	var pols []map[string]any
	for _, d := range docsOfKind(s.tokengate, "NetworkPolicy") {
		if str(d["apiVersion"]) == "networking.k8s.io/v1" && namespaceOf(d) == tg.namespace && selects(stringMap(at(d, "spec", "podSelector", "matchLabels")), tg.labels) {
			pols = append(pols, d)
		}
	}
	if len(pols) == 0 {
		return []error{fmt.Errorf("no networking.k8s.io/v1 NetworkPolicy selects the tokengate pods in namespace %s: anything in the cluster reaches 9001 and /authz", tg.namespace)}
	}
	reachable := map[uint32]bool{}
	for _, d := range pols {
		if !slices.Contains(list(at(d, "spec", "policyTypes")), any("Ingress")) {
			errs = append(errs, fmt.Errorf("NetworkPolicy %v does not restrict Ingress", at(d, "metadata", "name")))
		}
		for i, rule := range list(at(d, "spec", "ingress")) {
			admits := func(port uint32) bool {
				ports := list(at(rule, "ports"))
				if len(ports) == 0 {
					return true // no ports: every port
				}
				for _, p := range ports {
					v := at(p, "port")
					if v == nil || fmt.Sprint(v) == strconv.Itoa(int(port)) || tg.ports[fmt.Sprint(v)] == int(port) {
						return true
					}
				}
				return false
			}
			from := list(at(rule, "from"))
			for _, gp := range gatewayPorts {
				if !admits(gp) {
					continue
				}
				if len(from) == 0 {
					errs = append(errs, fmt.Errorf("NetworkPolicy ingress[%d] admits port %d from anywhere: only the gateways may reach it", i, gp))
					continue
				}
				for _, peer := range from {
					ns := stringMap(at(peer, "namespaceSelector", "matchLabels"))["kubernetes.io/metadata.name"]
					pods := stringMap(at(peer, "podSelector", "matchLabels"))
					switch {
					case at(peer, "ipBlock") != nil:
						errs = append(errs, fmt.Errorf("NetworkPolicy ingress[%d] admits port %d from an ipBlock: name the gateway pods", i, gp))
					case ns == "istio-system" && pods["istio"] == "ingressgateway":
						reachable[gp] = true
					case ns == echo.namespace && ns != "":
						reachable[gp] = true
					default:
						errs = append(errs, fmt.Errorf("NetworkPolicy ingress[%d] admits port %d from %v, which is not a gateway", i, gp, peer))
					}
				}
			}
			if admits(metricsPort) && len(from) == 0 {
				errs = append(errs, fmt.Errorf("NetworkPolicy ingress[%d] admits /metrics (port %d) from anywhere", i, metricsPort))
			}
		}
	}
	for _, gp := range gatewayPorts {
		if !reachable[gp] {
			errs = append(errs, fmt.Errorf("no NetworkPolicy rule lets the gateways reach port %d", gp))
		}
	}
	return errs
}

// checkTokengateAllow: an ALLOW AuthorizationPolicy on tokengate admits the gateway ports only
// for the gateways' principals (the echo sidecar's among them).
func checkTokengateAllow(s k8sSet, tg podInfo, gatewayPorts []uint32, echoPrincipal string) []error {
	var errs []error
	found := false
	allowed := []string{ingressGatewayPrincipal, echoPrincipal}
	for _, d := range docsOfKind(s.tokengate, "AuthorizationPolicy") {
		p, err := loadPolicy(d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if namespaceOf(d) != tg.namespace || !selects(p.GetSelector().GetMatchLabels(), tg.labels) || p.GetAction() != securityv1beta1.AuthorizationPolicy_ALLOW {
			continue
		}
		found = true
		principals := map[string]bool{}
		for i, r := range p.GetRules() {
			admits := func(port uint32) bool {
				if len(r.GetTo()) == 0 {
					return true
				}
				for _, to := range r.GetTo() {
					op := to.GetOperation()
					if len(op.GetPorts()) == 0 && !slices.Contains(op.GetNotPorts(), strconv.Itoa(int(port))) {
						return true
					}
					if slices.Contains(op.GetPorts(), strconv.Itoa(int(port))) {
						return true
					}
				}
				return false
			}
			for _, gp := range gatewayPorts {
				if !admits(gp) {
					continue
				}
				if len(r.GetFrom()) == 0 {
					errs = append(errs, fmt.Errorf("AuthorizationPolicy %v rules[%d] allows port %d to any caller", at(d, "metadata", "name"), i, gp))
				}
				for _, f := range r.GetFrom() {
					src := f.GetSource()
					if len(src.GetPrincipals()) == 0 || len(src.GetNamespaces())+len(src.GetIpBlocks())+len(src.GetRemoteIpBlocks())+len(src.GetRequestPrincipals()) > 0 {
						errs = append(errs, fmt.Errorf("AuthorizationPolicy %v rules[%d] allows port %d by something other than the gateways' principals", at(d, "metadata", "name"), i, gp))
					}
					for _, pr := range src.GetPrincipals() {
						if !slices.Contains(allowed, pr) {
							errs = append(errs, fmt.Errorf("AuthorizationPolicy %v rules[%d] allows principal %q, which is not a gateway", at(d, "metadata", "name"), i, pr))
						}
						principals[pr] = true
					}
				}
			}
		}
		if !principals[echoPrincipal] {
			errs = append(errs, fmt.Errorf("AuthorizationPolicy %v does not allow %s, the sidecar that calls ext_authz for ../authorization-policy.yaml", at(d, "metadata", "name"), echoPrincipal))
		}
	}
	if !found {
		errs = append(errs, errors.New("no ALLOW AuthorizationPolicy selects tokengate: any mesh workload reaches 9001 and /authz"))
	}
	return errs
}

// checkEchoPolicies: the workload's CUSTOM policy names only its declared port, and a DENY
// policy refuses every other port (path rules never apply to TCP or undeclared ports).
func checkEchoPolicies(s k8sSet, echo podInfo) []error {
	var errs []error
	var declared []string
	for _, p := range echo.ports {
		declared = append(declared, strconv.Itoa(p))
	}
	slices.Sort(declared)
	if svc := docOf(s.echo, "Service", "echo"); svc != nil {
		for _, p := range list(at(svc, "spec", "ports")) {
			tp := fmt.Sprint(at(p, "targetPort"))
			if _, ok := echo.ports[tp]; !ok && !slices.Contains(declared, tp) {
				errs = append(errs, fmt.Errorf("echo Service port %v targets %s, which the container does not declare", at(p, "name"), tp))
			}
		}
	}
	deny := false
	for _, d := range s.policies {
		p, err := loadPolicy(d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if namespaceOf(d) != echo.namespace || !selects(p.GetSelector().GetMatchLabels(), echo.labels) {
			continue
		}
		switch p.GetAction() {
		case securityv1beta1.AuthorizationPolicy_CUSTOM:
			for i, r := range p.GetRules() {
				for _, to := range r.GetTo() {
					ports := slices.Clone(to.GetOperation().GetPorts())
					slices.Sort(ports)
					if len(ports) == 0 || !slices.Equal(ports, declared) {
						errs = append(errs, fmt.Errorf("AuthorizationPolicy %v rules[%d]: ports %v, want the declared ports %v", at(d, "metadata", "name"), i, ports, declared))
					}
				}
			}
		case securityv1beta1.AuthorizationPolicy_DENY:
			for _, r := range p.GetRules() {
				if len(r.GetFrom()) > 0 || len(r.GetWhen()) > 0 {
					continue
				}
				for _, to := range r.GetTo() {
					op := to.GetOperation()
					np := slices.Clone(op.GetNotPorts())
					slices.Sort(np)
					if slices.Equal(np, declared) && len(op.GetPaths())+len(op.GetNotPaths())+len(op.GetMethods())+len(op.GetHosts())+len(op.GetPorts()) == 0 {
						deny = true
					}
				}
			}
		}
	}
	if !deny {
		errs = append(errs, fmt.Errorf("no DENY AuthorizationPolicy refuses the echo workload's undeclared ports (notPorts %v): the CUSTOM policy's path rules never apply to them", declared))
	}
	return errs
}

// protoSpec decodes d's spec into an Istio message, refusing unknown fields.
func protoSpec(d map[string]any, m proto.Message) error {
	js, err := json.Marshal(d["spec"])
	if err != nil {
		return err
	}
	return protojson.Unmarshal(js, m)
}

// TestKubernetesAccess checks the shipped manifests against checkAccess, then proves the checks
// catch each hole with a broken copy.
func TestKubernetesAccess(t *testing.T) {
	set := loadK8sSet(t)
	objs := k8sObjects(t, k8sTokengate)
	cfg, _ := loadIstioTokengate(t, findObject(t, objs, "ConfigMap", "tokengate-config"))
	grpc, authz := addrPort(t, cfg.Server.GRPCAddr), addrPort(t, cfg.Server.AuthzAddr)
	httpP, metrics := addrPort(t, cfg.Server.HTTPAddr), uint32(0)
	if cfg.Server.MetricsAddr != "" {
		metrics = addrPort(t, cfg.Server.MetricsAddr)
	}
	noErrors(t, checkAccess(set, cfg, grpc, authz, httpP, metrics))

	tgDoc := func(t *testing.T, s k8sSet, kind, name string) map[string]any {
		d := docOf(s.tokengate, kind, name)
		if d == nil {
			t.Fatalf("no %s %s", kind, name)
		}
		return d
	}
	drop := func(docs []map[string]any, kind string) []map[string]any {
		return slices.DeleteFunc(docs, func(d map[string]any) bool { return str(d["kind"]) == kind })
	}
	cases := []struct {
		name   string
		mutate func(t *testing.T, s *k8sSet)
		want   string
	}{
		{"no NetworkPolicy", func(t *testing.T, s *k8sSet) { s.tokengate = drop(s.tokengate, "NetworkPolicy") }, "no networking.k8s.io/v1 NetworkPolicy"},
		{"NetworkPolicy admits 9001 from anywhere", func(t *testing.T, s *k8sSet) {
			rules := digList(t, tgDoc(t, *s, "NetworkPolicy", "tokengate"), "spec", "ingress")
			delete(rules[0].(map[string]any), "from")
		}, "admits port 9001 from anywhere"},
		{"NetworkPolicy rule without ports", func(t *testing.T, s *k8sSet) {
			rules := digList(t, tgDoc(t, *s, "NetworkPolicy", "tokengate"), "spec", "ingress")
			delete(rules[1].(map[string]any), "ports")
		}, "admits port 9001 from anywhere"},
		{"PeerAuthentication PERMISSIVE", func(t *testing.T, s *k8sSet) {
			digMap(t, tgDoc(t, *s, "PeerAuthentication", "tokengate"), "spec", "mtls")["mode"] = "PERMISSIVE"
		}, "want STRICT"},
		{"no PeerAuthentication", func(t *testing.T, s *k8sSet) { s.tokengate = drop(s.tokengate, "PeerAuthentication") }, "no PeerAuthentication with mtls STRICT"},
		{"no ALLOW policy", func(t *testing.T, s *k8sSet) { s.tokengate = drop(s.tokengate, "AuthorizationPolicy") }, "no ALLOW AuthorizationPolicy"},
		{"ALLOW for any caller", func(t *testing.T, s *k8sSet) {
			rules := digList(t, tgDoc(t, *s, "AuthorizationPolicy", "tokengate-callers"), "spec", "rules")
			delete(rules[0].(map[string]any), "from")
		}, "allows port 9001 to any caller"},
		{"ALLOW rule without ports", func(t *testing.T, s *k8sSet) {
			rules := digList(t, tgDoc(t, *s, "AuthorizationPolicy", "tokengate-callers"), "spec", "rules")
			delete(rules[1].(map[string]any), "to")
		}, "allows port 9001 to any caller"},
		{"no DENY on other ports", func(t *testing.T, s *k8sSet) {
			s.policies = slices.DeleteFunc(s.policies, func(d map[string]any) bool { return str(at(d, "spec", "action")) == "DENY" })
		}, "no DENY AuthorizationPolicy refuses"},
		{"CUSTOM rule on every port", func(t *testing.T, s *k8sSet) {
			op := digMap(t, docOf(s.policies, "AuthorizationPolicy", "echo-tokengate"), "spec", "rules", 0, "to", 0, "operation")
			delete(op, "ports")
		}, "want the declared ports"},
		{"echo declares 8443", func(t *testing.T, s *k8sSet) {
			c := digMap(t, docOf(s.echo, "Deployment", "echo"), "spec", "template", "spec", "containers", 0)
			c["ports"] = append(list(c["ports"]), map[string]any{"name": "https", "containerPort": float64(8443)})
		}, "want the declared ports"},
		{"no path normalization", func(t *testing.T, s *k8sSet) { delete(digMap(t, s.mesh, "spec", "meshConfig"), "pathNormalization") }, "want MERGE_SLASHES"},
		{"no PodDisruptionBudget", func(t *testing.T, s *k8sSet) { s.tokengate = drop(s.tokengate, "PodDisruptionBudget") }, "no policy/v1 PodDisruptionBudget"},
		{"PDB that blocks every drain", func(t *testing.T, s *k8sSet) {
			digMap(t, tgDoc(t, *s, "PodDisruptionBudget", "tokengate"), "spec")["minAvailable"] = float64(2)
		}, "fewer than the 2 replicas"},
		{"no topology spread", func(t *testing.T, s *k8sSet) {
			delete(digMap(t, tgDoc(t, *s, "Deployment", "tokengate"), "spec", "template", "spec"), "topologySpreadConstraints")
		}, "no topologySpreadConstraint"},
		{"image :latest", func(t *testing.T, s *k8sSet) {
			digMap(t, tgDoc(t, *s, "Deployment", "tokengate"), "spec", "template", "spec", "containers", 0)["image"] = "tokengate:latest"
		}, "is not pinned"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := set.copy(t)
			c.mutate(t, &s)
			wantError(t, checkAccess(s, cfg, grpc, authz, httpP, metrics), c.want)
		})
	}
	t.Run("authz on http_addr", func(t *testing.T) {
		wantError(t, checkAccess(set, cfg, grpc, httpP, httpP, metrics), "authz_addr must put /authz on its own port")
	})
	t.Run("metrics on http_addr", func(t *testing.T) {
		wantError(t, checkAccess(set, cfg, grpc, authz, httpP, httpP), "metrics_addr must put /metrics on its own port")
	})
}

// TestIstioRoutesStripClaimHeaders runs tokengate with the Istio ConfigMap's configuration and
// asks it over gRPC, as the echo sidecar does (no context_extensions: routes chosen by path):
// on every allowed route a caller-sent claim header that the route does not set itself is
// removed, so a forged X-Subject never reaches the upstream (docs/decisions.md#the-allowed-response; issue 9 items 12,
// 13). The none route needs no IdP, so the test needs no network.
func TestIstioRoutesStripClaimHeaders(t *testing.T) {
	cfg, _ := loadIstioTokengate(t, findObject(t, k8sObjects(t, k8sTokengate), "ConfigMap", "tokengate-config"))
	cfg.Server.AuthzAddr, cfg.Server.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, app.Options{Config: cfg, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	claimHeaders := forwardClaimHeaders(cfg)
	if len(claimHeaders) == 0 {
		t.Fatal("the ConfigMap forwards no claim headers: nothing to prove")
	}
	hdrs := map[string]string{}
	for _, h := range claimHeaders {
		hdrs[h] = "mallory"
	}
	resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "echo.demo.svc.cluster.local:80", Path: "/none/x", Scheme: "http", Headers: hdrs,
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("/none/x: not allowed: %v", resp.GetStatus())
	}
	for _, h := range claimHeaders {
		if !containsFold(ok.GetHeadersToRemove(), h) {
			t.Errorf("/none/x: the caller's %s is not in headers_to_remove %v: it would reach the upstream", h, ok.GetHeadersToRemove())
		}
	}
}
