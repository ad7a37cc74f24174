package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/tokengate/tokengate/internal/jose"
)

// Limits on hostile input: the file is trusted, but SIGHUP reloads and `validate` must never
// hang or blow up.
const (
	maxConfigBytes = 4 << 20
	// maxNodes bounds the YAML nodes walked, counting every expansion of an alias, so that a
	// "billion laughs" document is refused quickly.
	maxNodes = 100_000
	maxDepth = 32 // nesting of free-form values (claims)
)

// Load reads the configuration file at path and returns it with defaults applied, secrets and
// files resolved (relative paths are relative to the file's directory) and every rule checked.
// env looks up environment variables for ${NAME} references; nil means os.LookupEnv.
//
// A problem with the configuration is returned as *Errors listing every problem. Failing to read
// the file itself is an ordinary error (wrapping the *fs.PathError when there is one).
func Load(path string, env func(string) (string, bool)) (*Config, error) {
	data, err := readFile("", path, maxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, filepath.Dir(path), env)
}

// Parse is Load on the bytes of a configuration file. baseDir is the directory relative paths
// are resolved against ("" means the current directory); env is as for Load. Every error it
// returns is a non-empty *Errors, and a nil error always comes with a non-nil *Config.
func Parse(data []byte, baseDir string, env func(string) (string, bool)) (*Config, error) {
	if env == nil {
		env = os.LookupEnv
	}
	p := newProblems()
	if len(data) > maxConfigBytes {
		p.add("", "configuration is larger than %d bytes", maxConfigBytes)
		return nil, p.result()
	}
	root := parseYAML(data, p)
	if root == nil {
		return nil, p.result()
	}
	w := &walker{p: p, env: env, budget: maxNodes, active: map[*yaml.Node]bool{}}
	clean, ok := w.value("", root, reflect.TypeFor[Config](), 0)
	p.spans[""] = span{end: w.maxp}
	walked := len(p.list)

	cfg := &Config{}
	if !ok {
		clean = &yaml.Node{Kind: yaml.MappingNode}
	}
	if err := clean.Decode(cfg); err != nil {
		// The walk lets through only values of the right shape, so this is a bug here, not in
		// the file. yaml.v3's text may quote a value, so it is not shown.
		p.add("", "internal error decoding the configuration")
		return nil, p.result()
	}
	finishDefaults(cfg)
	resolveFiles(cfg, baseDir, p)
	validate(cfg, p)
	p.dropRefused(walked)
	if errs := p.result(); errs != nil {
		return nil, errs
	}
	cfg.Warnings = p.warnings
	return cfg, nil
}

// finishDefaults sets the defaults that depend on other settings.
func finishDefaults(cfg *Config) {
	if is := cfg.Issuer; is != nil {
		for i := range is.Clients {
			if is.Clients[i].TokenTTL == unset {
				is.Clients[i].TokenTTL = is.TokenTTL
			}
		}
	}
	for i := range cfg.Providers {
		pr := &cfg.Providers[i]
		if pr.Algorithms != nil {
			continue
		}
		pr.Algorithms = jose.DefaultAlgorithms()
		if pr.IsSelf() && cfg.Issuer != nil {
			// The algorithms of the issuer's own keys, each once, in key order.
			var algs []string
			for _, k := range cfg.Issuer.SigningKeys {
				if jose.IsSigningAlgorithm(k.Alg) && !slices.Contains(algs, k.Alg) {
					algs = append(algs, k.Alg)
				}
			}
			if algs != nil {
				pr.Algorithms = algs
			}
		}
	}
}

// parseYAML parses exactly one YAML document and returns its root node, or nil after adding a
// problem.
func parseYAML(data []byte, p *problems) (root *yaml.Node) {
	defer func() {
		// yaml.v3 turns its own failures into errors, but a configuration loader must never take
		// the process down, whatever the bytes.
		if r := recover(); r != nil {
			root = nil
			p.add("", "invalid YAML")
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, extra yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.add("", "configuration is empty")
		} else {
			p.add("", "%s", yamlError(err))
		}
		return nil
	}
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.add("", "%s", yamlError(err))
		return nil
	default:
		p.add("", "configuration must be a single YAML document")
		return nil
	}
	n := &doc
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind == yaml.DocumentNode || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		p.add("", "configuration is empty")
		return nil
	}
	return n
}

var backquoted = regexp.MustCompile("`[^`]*`")

// yamlError returns the parser's message on one line, without any quoted piece of the document
// (which could be a secret).
func yamlError(err error) string {
	msg := strings.Join(strings.Fields(backquoted.ReplaceAllString(err.Error(), "value")), " ")
	if !strings.HasPrefix(msg, "yaml:") {
		msg = "yaml: " + msg
	}
	return msg
}

// walker checks a YAML node tree against the yaml tags of this package's types and returns a
// clean tree for yaml.v3 to decode: aliases and merge keys expanded, ${NAME} expanded, scalars
// in the one form each field accepts, and refused or unknown entries left out.
type walker struct {
	p        *problems
	env      func(string) (string, bool)
	budget   int
	overflow bool
	// active holds alias targets being expanded, to refuse an alias inside its own anchor.
	active map[*yaml.Node]bool
	// maxp is the furthest position seen in the subtree being walked.
	maxp pos
	// ref, when set, is the position of the alias or merge key being expanded: problems inside
	// sort there, so that they follow the paths they land in.
	ref *pos
}

func (w *walker) spend() bool {
	if w.budget--; w.budget < 0 && !w.overflow {
		w.overflow = true
		w.p.add("", "configuration is too large (more than %d YAML nodes after alias expansion)", maxNodes)
	}
	return w.budget >= 0
}

func (w *walker) at(n *yaml.Node) pos {
	if w.ref != nil {
		return *w.ref
	}
	return pos{n.Line, n.Column}
}

// fail reports a problem with the value at path and marks the path as refused.
func (w *walker) fail(path, format string, args ...any) {
	w.p.add(path, format, args...)
	w.p.bad[path] = true
}

func scalar(tag, value string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
}

var (
	durationType = reflect.TypeFor[Duration]()
	secretType   = reflect.TypeFor[Secret]()
	anyType      = reflect.TypeFor[any]()
	null         = scalar("!!null", "null")
)

// invalid stands in for a refused string, so that checks of the enclosing value (such as
// "exactly one of ...") do not report it a second time as missing; a refused struct is an empty
// mapping for the same reason. A Config holding them is never returned.
const invalid = "<invalid>"

func placeholder(t reflect.Type) (*yaml.Node, bool) {
	switch t.Kind() {
	case reflect.String:
		return scalar("!!str", invalid), true
	case reflect.Struct, reflect.Pointer:
		return &yaml.Node{Kind: yaml.MappingNode}, true
	}
	return nil, false
}

// value checks n, the value at path, against type t. ok is false when there is nothing to set:
// an absent or null value, or a refused one (then a problem is recorded and the path is bad).
func (w *walker) value(path string, n *yaml.Node, t reflect.Type, depth int) (*yaml.Node, bool) {
	if !w.spend() {
		return nil, false
	}
	if n.Kind == yaml.AliasNode {
		target := n.Alias
		switch {
		case target == nil:
			w.fail(path, "invalid alias")
			return nil, false
		case w.active[target]:
			w.fail(path, "alias refers to a value that contains it")
			return nil, false
		}
		w.active[target] = true
		defer delete(w.active, target)
		if w.ref == nil {
			ref := w.at(n)
			w.ref = &ref
			defer func() { w.ref = nil }()
		}
		return w.value(path, target, t, depth)
	}
	w.maxp = maxPos(w.maxp, w.at(n))
	if isNull(n) {
		if t.Kind() == reflect.Pointer {
			return &yaml.Node{Kind: yaml.MappingNode}, true // `remove:` sets the option
		}
		return nil, false
	}
	switch k := t.Kind(); {
	case t == durationType:
		s, ok := w.scalarString(path, n, errBadDuration.Error())
		if !ok {
			return nil, false
		}
		if _, err := parseDuration(scalar("!!str", s)); err != nil {
			w.fail(path, "%v", err)
			return nil, false
		}
		return scalar("!!str", s), true
	case t == anyType:
		return w.freeValue(path, n, depth)
	case k == reflect.Pointer:
		return w.value(path, n, t.Elem(), depth)
	case k == reflect.Struct:
		return w.structValue(path, n, t, depth)
	case k == reflect.String:
		s, ok := w.scalarString(path, n, "must be a string")
		return scalar("!!str", s), ok
	case k == reflect.Bool:
		return w.typedValue(path, n, "!!bool", "must be true or false")
	case k == reflect.Int:
		return w.typedValue(path, n, "!!int", "must be an integer")
	case k == reflect.Slice:
		return w.sliceValue(path, n, t, depth)
	case k == reflect.Map:
		return w.mapValue(path, n, t, depth)
	}
	w.fail(path, "unsupported field type") // unreachable for the types of this package
	return nil, false
}

// scalarOK reports whether n is a scalar this package reads, refusing tags such as !!binary.
func (w *walker) scalarOK(path string, n *yaml.Node, shape string) bool {
	if n.Kind != yaml.ScalarNode {
		w.fail(path, "%s", shape)
		return false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
		return true
	}
	w.fail(path, "unsupported YAML tag %s", quote(n.ShortTag()))
	return false
}

// scalarString returns the text of a scalar with ${NAME} expanded. Numbers, booleans and dates
// keep the text they were written with, so `client_id: 0123` is "0123".
func (w *walker) scalarString(path string, n *yaml.Node, shape string) (string, bool) {
	if !w.scalarOK(path, n, shape) {
		return "", false
	}
	return w.expand(path, n.Value)
}

var decimal = regexp.MustCompile(`^[-+]?[0-9]+$`)

// typedValue reads a boolean (tag "!!bool") or decimal integer ("!!int") scalar; a quoted
// "${NAME}" may give the value (`db: "${REDIS_DB}"`). YAML 1.1 forms (yes, on, 0x10) are refused.
func (w *walker) typedValue(path string, n *yaml.Node, tag, shape string) (*yaml.Node, bool) {
	if !w.scalarOK(path, n, shape) {
		return nil, false
	}
	s := n.Value
	switch {
	case n.ShortTag() == "!!str" && strings.Contains(s, "${"):
		var ok bool
		if s, ok = w.expand(path, s); !ok {
			return nil, false
		}
	case n.ShortTag() != tag:
		w.fail(path, "%s", shape)
		return nil, false
	}
	if tag == "!!bool" {
		if b, err := strconv.ParseBool(s); err == nil && (n.ShortTag() == tag || s == "true" || s == "false") {
			return scalar(tag, strconv.FormatBool(b)), true
		}
		w.fail(path, "%s", shape)
		return nil, false
	}
	if !decimal.MatchString(s) {
		w.fail(path, "must be a decimal integer")
		return nil, false
	}
	v, err := strconv.ParseInt(s, 10, strconv.IntSize)
	if err != nil {
		w.fail(path, "integer out of range")
		return nil, false
	}
	return scalar(tag, strconv.FormatInt(v, 10)), true
}

func (w *walker) sliceValue(path string, n *yaml.Node, t reflect.Type, depth int) (*yaml.Node, bool) {
	if n.Kind != yaml.SequenceNode {
		w.fail(path, "must be a list")
		return nil, false
	}
	out, all := &yaml.Node{Kind: yaml.SequenceNode}, true
	for i, c := range n.Content {
		ip := indexPath(path, i)
		v, ok := w.entry(ip, w.at(c), c, t.Elem(), depth+1)
		switch {
		case ok:
		case !isNull(c):
		case t.Elem() == anyType:
			v, ok = null, true // a null inside a free-form list is a JSON null
		default:
			w.fail(ip, "must not be null")
		}
		if !ok && w.p.bad[ip] {
			v, ok = placeholder(t.Elem())
		}
		all = all && ok
		out.Content = append(out.Content, v)
	}
	// A list with a refused element is dropped whole: keeping the rest would shift indices and
	// could widen what the list allows.
	return out, all
}

// entry walks one map entry or list element found at position at, recording where its path is.
func (w *walker) entry(path string, at pos, n *yaml.Node, t reflect.Type, depth int) (*yaml.Node, bool) {
	saved := w.maxp
	w.maxp = at
	v, ok := w.value(path, n, t, depth)
	if _, seen := w.p.spans[path]; !seen {
		w.p.spans[path] = span{start: at, end: w.maxp}
	}
	w.maxp = maxPos(saved, w.maxp)
	return v, ok
}

func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// mapEntry is one key/value pair of a mapping, after merge keys are expanded.
type mapEntry struct {
	key      string
	at       pos
	value    *yaml.Node
	isString bool
	merged   bool // walked as if referenced from at, like an alias
}

// entries returns the pairs of mapping n with merge keys (<<) expanded as YAML defines them:
// keys written in the mapping win over merged ones, and earlier merge sources over later ones.
// Duplicate keys written in the mapping are reported.
func (w *walker) entries(path string, n *yaml.Node) []mapEntry {
	var own, merged []mapEntry
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content) && w.spend(); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			for _, e := range w.mergeSources(path, w.at(k), v) {
				e.at, e.merged = w.at(k), true
				merged = append(merged, e)
			}
			continue
		}
		key, isString := deref(k).Value, deref(k).Kind == yaml.ScalarNode
		if !isString {
			key = "(complex key)"
		}
		if seen[key] {
			// At the line of the repeated key, sorted with the first.
			w.p.list = append(w.p.list, Problem{Line: w.at(k).line, Path: keyPath(path, key), Message: "duplicate key"})
			continue
		}
		seen[key] = true
		own = append(own, mapEntry{key: key, at: w.at(k), value: v, isString: isString})
	}
	for _, e := range merged {
		if !seen[e.key] {
			seen[e.key] = true
			own = append(own, e)
		}
	}
	return own
}

// mergeSources returns the entries a merge key's value brings in, in priority order.
func (w *walker) mergeSources(path string, at pos, v *yaml.Node) []mapEntry {
	srcs := []*yaml.Node{v}
	if deref(v).Kind == yaml.SequenceNode {
		srcs = deref(v).Content
	}
	var out []mapEntry
	for _, s := range srcs {
		m := deref(s)
		if w.overflow {
			return nil
		}
		if m.Kind != yaml.MappingNode || w.active[m] {
			kp := keyPath(path, "<<")
			if _, seen := w.p.spans[kp]; !seen {
				w.p.spans[kp] = span{start: at, end: at}
			}
			w.fail(kp, "a merge key needs a mapping or a list of mappings")
			return nil
		}
		w.active[m] = true
		saved := w.ref
		w.ref = &at
		out = append(out, w.entries(path, m)...)
		w.ref = saved
		delete(w.active, m)
	}
	return out
}

// walkEntry walks a merged or written entry, as if referenced from its merge key when merged.
func (w *walker) walkEntry(path string, e mapEntry, t reflect.Type, depth int) (*yaml.Node, bool) {
	if e.merged && w.ref == nil {
		at := e.at
		w.ref = &at
		defer func() { w.ref = nil }()
	}
	v, ok := w.entry(path, e.at, e.value, t, depth)
	if !ok && w.p.bad[path] {
		v, ok = placeholder(t)
	}
	return v, ok
}

type field struct {
	t   reflect.Type
	key string // the field's key in the clean tree
	sub string // for a Secret: "value" or "file"
}

// fields maps the YAML keys of struct type t to their field types, with the fields of inline
// structs in line. A Secret field takes two keys, its own (the inline value) and the same with
// "_file"; sub names the Secret's field each fills.
func fields(t reflect.Type) map[string]field {
	m := map[string]field{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case opts == "inline":
			for k, v := range fields(f.Type) {
				m[k] = v
			}
		case name == "-" || name == "":
		case f.Type == secretType:
			m[name] = field{reflect.TypeFor[string](), name, "value"}
			m[name+"_file"] = field{reflect.TypeFor[string](), name, "file"}
		default:
			m[name] = field{f.Type, name, ""}
		}
	}
	return m
}

func (w *walker) structValue(path string, n *yaml.Node, t reflect.Type, depth int) (*yaml.Node, bool) {
	if n.Kind != yaml.MappingNode {
		if path == "" {
			w.fail(path, "configuration must be a YAML mapping")
		} else {
			w.fail(path, "must be a mapping")
		}
		return nil, false
	}
	fs := fields(t)
	out := &yaml.Node{Kind: yaml.MappingNode}
	secrets := map[string]*yaml.Node{}
	for _, e := range w.entries(path, n) {
		kp := keyPath(path, e.key)
		f, known := fs[e.key]
		if !known || !e.isString {
			if _, seen := w.p.spans[kp]; !seen {
				w.p.spans[kp] = span{start: e.at, end: e.at}
			}
			w.p.add(kp, "unknown field")
			continue
		}
		v, ok := w.walkEntry(kp, e, f.t, depth+1)
		switch {
		case !ok:
		case f.sub == "":
			out.Content = append(out.Content, scalar("!!str", f.key), v)
		case secrets[f.key] == nil:
			secrets[f.key] = &yaml.Node{Kind: yaml.MappingNode}
			out.Content = append(out.Content, scalar("!!str", f.key), secrets[f.key])
			fallthrough
		default:
			secrets[f.key].Content = append(secrets[f.key].Content, scalar("!!str", f.sub), v)
		}
	}
	return out, true
}

func (w *walker) mapValue(path string, n *yaml.Node, t reflect.Type, depth int) (*yaml.Node, bool) {
	if n.Kind != yaml.MappingNode {
		w.fail(path, "must be a mapping")
		return nil, false
	}
	out, all := &yaml.Node{Kind: yaml.MappingNode}, true
	for _, e := range w.entries(path, n) {
		kp := keyPath(path, e.key)
		if !e.isString {
			w.fail(kp, "keys must be strings")
			all = false
			continue
		}
		v, ok := w.walkEntry(kp, e, t.Elem(), depth+1)
		switch {
		case ok:
		case isNull(e.value) && t.Elem() == anyType:
			v, ok = null, true
		case isNull(e.value):
			w.fail(kp, "must not be null")
		}
		all = all && ok
		out.Content = append(out.Content, scalar("!!str", e.key), v)
	}
	return out, all
}

// jsonNumber is the JSON number grammar (RFC 8259 §6).
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// freeValue checks a free-form value (a claim): scalars, lists and mappings of them. Numbers
// keep the digits written when they are valid JSON (so large integers keep their precision).
func (w *walker) freeValue(path string, n *yaml.Node, depth int) (*yaml.Node, bool) {
	if depth > maxDepth {
		w.fail(path, "nested too deeply (more than %d levels)", maxDepth)
		return nil, false
	}
	switch n.Kind {
	case yaml.SequenceNode:
		return w.sliceValue(path, n, reflect.TypeFor[[]any](), depth)
	case yaml.MappingNode:
		return w.mapValue(path, n, reflect.TypeFor[map[string]any](), depth)
	}
	if !w.scalarOK(path, n, "unsupported value") {
		return nil, false
	}
	switch tag := n.ShortTag(); tag {
	case "!!int", "!!float":
		var i int64
		var f float64
		var err error
		switch {
		case jsonNumber.MatchString(n.Value):
			if f, err = strconv.ParseFloat(n.Value, 64); err == nil || !math.IsInf(f, 0) {
				return scalar("!!float", n.Value), true
			}
		case tag == "!!int":
			if err := n.Decode(&i); err != nil {
				w.fail(path, "integer out of range")
				return nil, false
			}
			return scalar("!!float", strconv.FormatInt(i, 10)), true
		default:
			if err = n.Decode(&f); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
				return scalar("!!float", strconv.FormatFloat(f, 'g', -1, 64)), true
			}
		}
		w.fail(path, "must be a finite number")
		return nil, false
	case "!!bool":
		return w.typedValue(path, n, "!!bool", "must be true or false")
	}
	s, ok := w.expand(path, n.Value)
	return scalar("!!str", s), ok
}

// UnmarshalYAML decodes the clean tree of a free-form value: numbers become json.Number.
func (c *Claims) UnmarshalYAML(n *yaml.Node) error {
	*c, _ = freeDecode(n).(map[string]any)
	return nil
}

func freeDecode(n *yaml.Node) any {
	switch n.Kind {
	case yaml.SequenceNode:
		out := make([]any, len(n.Content))
		for i, c := range n.Content {
			out[i] = freeDecode(c)
		}
		return out
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			out[n.Content[i].Value] = freeDecode(n.Content[i+1])
		}
		return out
	}
	switch n.Tag {
	case "!!null":
		return nil
	case "!!bool":
		return n.Value == "true"
	case "!!float":
		return json.Number(n.Value)
	}
	return n.Value
}

// envName is a valid ${NAME}.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expand replaces each ${NAME} in s by the value of environment variable NAME. "$${" writes a
// literal "${"; any other "$" is kept. The values are inserted as text, never parsed, so they
// cannot add YAML structure, and are not expanded again.
func (w *walker) expand(path, s string) (string, bool) {
	var b strings.Builder
	ok := true
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), ok
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i-1] + "${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			w.fail(path, "unterminated ${ (write $${ for a literal ${)")
			return "", false
		}
		name := s[i+2 : i+end]
		s = s[i+end+1:]
		v, set := w.env(name)
		switch {
		case !envName.MatchString(name):
			// The text between the braces is not quoted: it may be part of an inline secret.
			w.fail(path, "invalid ${...} reference: a name is letters, digits and _ (write $${ for a literal ${)")
		case !set:
			w.fail(path, "environment variable %s is not set", name)
		case !utf8.ValidString(v):
			w.fail(path, "environment variable %s is not valid UTF-8", name)
		default:
			b.WriteString(v)
			continue
		}
		ok = false
	}
}
