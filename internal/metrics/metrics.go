// Package metrics holds tokengate's Prometheus collectors. One *Metrics is built per process
// (never a package-level registry) and handed to every component; a nil *Metrics records
// nothing, so tests and tools may pass nil.
package metrics

import (
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check results, the values of the `result` label of tokengate_check_total
// (docs/operations.md#health-metrics-and-logs).
const (
	ResultAllowed     = "allowed"
	ResultDenied      = "denied"
	ResultUnavailable = "unavailable"
)

// Metrics is the set of collectors named in docs/operations.md#health-metrics-and-logs, plus a
// few of our own.
// Its methods are safe for concurrent use and do nothing on a nil receiver.
type Metrics struct {
	reg *prometheus.Registry

	checks         *prometheus.CounterVec
	checkDuration  prometheus.Histogram
	jwksRefresh    *prometheus.CounterVec
	upstreamTokens *prometheus.CounterVec
	tokensIssued   *prometheus.CounterVec
	cacheHits      *prometheus.CounterVec
	cacheMisses    *prometheus.CounterVec
	redisOps       *prometheus.CounterVec
	configReloads  *prometheus.CounterVec
	introspections *prometheus.CounterVec

	// The hit and miss series of the caches every Check consults, resolved once (lazily: a
	// series appears when first counted, as with WithLabelValues) instead of hashing the label
	// on every Check (issue 11).
	hits, misses [len(knownCaches)]lazyCounter

	bindingRefusals *prometheus.CounterVec // tokengate_binding_refusals_total{reason}
}

// knownCaches are the `cache` label values the hot paths count; others go through the vector.
var knownCaches = [...]string{"verified_tokens", "upstream_tokens", "redis"}

// lazyCounter is one series of a CounterVec, looked up on its first use and kept: the label
// values are hashed once, not per increment.
type lazyCounter struct {
	vec    *prometheus.CounterVec
	labels []string
	c      atomic.Pointer[prometheus.Counter]
}

func (l *lazyCounter) init(vec *prometheus.CounterVec, labels ...string) {
	l.vec, l.labels = vec, labels
}

// Inc adds one. Two first uses at once both look the series up: the vector returns the same
// series to both, so nothing is lost.
func (l *lazyCounter) Inc() {
	if c := l.c.Load(); c != nil {
		(*c).Inc()
		return
	}
	c := l.vec.WithLabelValues(l.labels...)
	l.c.Store(&c)
	c.Inc()
}

// New builds the collectors on a fresh registry that also carries the Go and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_check_total", Help: "Authorization decisions by route and result.",
		}, []string{"route", "result"}),
		checkDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tokengate_check_duration_seconds",
			Help:    "Time to decide one authorization request.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		jwksRefresh: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_jwks_refresh_total", Help: "JWKS fetches by provider and result.",
		}, []string{"provider", "result"}),
		upstreamTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_upstream_token_requests_total", Help: "Upstream token acquisitions (mint, IdP fetch or exchange) by route, mode and result.",
		}, []string{"route", "mode", "result"}),
		tokensIssued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_tokens_issued_total", Help: "Access tokens issued by the token endpoint, by client.",
		}, []string{"client_id"}),
		cacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_cache_hits_total", Help: "Cache hits by cache.",
		}, []string{"cache"}),
		cacheMisses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_cache_misses_total", Help: "Cache misses by cache.",
		}, []string{"cache"}),
		redisOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_redis_operations_total", Help: "Shared-cache (Redis) operations by operation and result.",
		}, []string{"op", "result"}),
		configReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_config_reloads_total", Help: "Configuration reloads by result.",
		}, []string{"result"}),
		introspections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_introspection_requests_total", Help: "Token introspection calls (RFC 7662) by provider and result.",
		}, []string{"provider", "result"}),
	}
	m.reg.MustRegister(m.checks, m.checkDuration, m.jwksRefresh, m.upstreamTokens, m.tokensIssued,
		m.cacheHits, m.cacheMisses, m.redisOps, m.configReloads, m.introspections,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for i, name := range knownCaches {
		m.hits[i].init(m.cacheHits, name)
		m.misses[i].init(m.cacheMisses, name)
	}
	m.bindingRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokengate_binding_refusals_total",
		Help: "Bound tokens (RFC 9449 DPoP, RFC 8705 certificates) refused, by the check that failed.",
	}, []string{"reason"})
	m.reg.MustRegister(m.bindingRefusals)
	return m
}

// RouteChecks records one route's decisions with its tokengate_check_total series resolved once
// (an Authorizer holds one per route), so a Check does not hash its labels. A nil *RouteChecks,
// from a nil *Metrics, records nothing.
type RouteChecks struct {
	m       *Metrics
	results [3]lazyCounter // ResultAllowed, ResultDenied, ResultUnavailable
}

// RouteChecks returns the recorder of route's decisions; nil when m is nil.
func (m *Metrics) RouteChecks(route string) *RouteChecks {
	if m == nil {
		return nil
	}
	r := &RouteChecks{m: m}
	for i, result := range [...]string{ResultAllowed, ResultDenied, ResultUnavailable} {
		r.results[i].init(m.checks, route, result)
	}
	return r
}

// Check records one decision of the route and how long it took, as Metrics.Check does.
func (r *RouteChecks) Check(result string, took time.Duration) {
	if r == nil {
		return
	}
	switch result {
	case ResultAllowed:
		r.results[0].Inc()
	case ResultDenied:
		r.results[1].Inc()
	case ResultUnavailable:
		r.results[2].Inc()
	default:
		r.m.checks.WithLabelValues(r.results[0].labels[0], result).Inc()
	}
	r.m.checkDuration.Observe(took.Seconds())
}

// Registry is the registry the collectors live on (for tests that gather).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Check records one decision and how long it took.
func (m *Metrics) Check(route, result string, took time.Duration) {
	if m == nil {
		return
	}
	m.checks.WithLabelValues(route, result).Inc()
	m.checkDuration.Observe(took.Seconds())
}

// JWKSRefresh records one JWKS fetch; result is "success" or "error".
func (m *Metrics) JWKSRefresh(provider, result string) {
	if m == nil {
		return
	}
	m.jwksRefresh.WithLabelValues(provider, result).Inc()
}

// UpstreamToken records one acquisition of an upstream token; mode is mint, fetch or exchange;
// result is a short word such as "success", "error", "rejected".
func (m *Metrics) UpstreamToken(route, mode, result string) {
	if m == nil {
		return
	}
	m.upstreamTokens.WithLabelValues(route, mode, result).Inc()
}

// TokenIssued records one token issued by the token endpoint.
func (m *Metrics) TokenIssued(clientID string) {
	if m == nil {
		return
	}
	m.tokensIssued.WithLabelValues(clientID).Inc()
}

// CacheHit records a hit in the named cache ("verified_tokens", "upstream_tokens", "redis", …).
func (m *Metrics) CacheHit(cache string) {
	if m == nil {
		return
	}
	for i := range knownCaches {
		if knownCaches[i] == cache {
			m.hits[i].Inc()
			return
		}
	}
	m.cacheHits.WithLabelValues(cache).Inc()
}

// CacheMiss records a miss in the named cache.
func (m *Metrics) CacheMiss(cache string) {
	if m == nil {
		return
	}
	for i := range knownCaches {
		if knownCaches[i] == cache {
			m.misses[i].Inc()
			return
		}
	}
	m.cacheMisses.WithLabelValues(cache).Inc()
}

// RedisOp records one shared-cache operation ("get", "set", "lock", "lock_wait", …) and its result.
func (m *Metrics) RedisOp(op, result string) {
	if m == nil {
		return
	}
	m.redisOps.WithLabelValues(op, result).Inc()
}

// ConfigReload records one configuration reload; result is "success" or "error".
func (m *Metrics) ConfigReload(result string) {
	if m == nil {
		return
	}
	m.configReloads.WithLabelValues(result).Inc()
}

// Introspection records one call to a provider's introspection endpoint (RFC 7662); result is
// "active", "inactive" or "error". Cached answers count as hits of the "introspection" cache.
func (m *Metrics) Introspection(provider, result string) {
	if m == nil {
		return
	}
	m.introspections.WithLabelValues(provider, result).Inc()
}

// BindingReasons are the reason label values of tokengate_binding_refusals_total: the check
// of a bound token that failed (docs/security.md#bound-tokens). Any other value is counted as "other".
var BindingReasons = []string{
	"dpop_missing", "dpop_multiple", "dpop_malformed", "dpop_typ", "dpop_alg", "dpop_jwk",
	"dpop_signature", "dpop_htm", "dpop_htu", "dpop_iat", "dpop_ath", "dpop_jti", "dpop_replay",
	"dpop_jkt_mismatch", "dpop_bearer_scheme", "dpop_unbound_token",
	"mtls_no_certificate", "mtls_bad_certificate", "mtls_mismatch",
	"cnf_unsupported", "binding_required",
}

// BindingRefusal counts one refused bound token by reason, one of BindingReasons.
func (m *Metrics) BindingRefusal(reason string) {
	if m == nil {
		return
	}
	if !slices.Contains(BindingReasons, reason) {
		reason = "other" // label values never come from input
	}
	m.bindingRefusals.WithLabelValues(reason).Inc()
}
