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
	p := &problems{spans: map[string]span{}, bad: map[string]bool{}}
	if len(data) > maxConfigBytes {
		p.add("", "configuration is larger than %d bytes", maxConfigBytes)
		return nil, p.result()
	}
	root := parseYAML(data, p)
	if root == nil {
		return nil, p.result()
	}
	cfg := &Config{}
	setDefaults(cfg)
	w := &walker{problems: p, env: env, budget: maxNodes, active: map[*yaml.Node]bool{}}
	w.walk("", root, reflect.ValueOf(cfg).Elem(), 0)
	p.spans[""], p.walked = span{end: w.end}, true
	finishDefaults(cfg)
	resolveFiles(cfg, baseDir, p)
	validate(cfg, p)
	if errs := p.result(); errs != nil {
		return nil, errs
	}
	cfg.Warnings = p.warnings
	return cfg, nil
}

// finishDefaults sets the defaults that depend on other settings: a client's token_ttl is the
// issuer's, and the `self` provider's algorithms are those of the issuer's keys.
func finishDefaults(cfg *Config) {
	var algs []string
	if is := cfg.Issuer; is != nil {
		for i := range is.Clients {
			if is.Clients[i].TokenTTL == unset {
				is.Clients[i].TokenTTL = is.TokenTTL
			}
		}
		for _, k := range is.SigningKeys {
			if jose.IsSigningAlgorithm(k.Alg) && !slices.Contains(algs, k.Alg) {
				algs = append(algs, k.Alg)
			}
		}
	}
	for i := range cfg.Providers {
		switch pr := &cfg.Providers[i]; {
		case pr.Algorithms != nil:
		case pr.IsSelf() && algs != nil:
			pr.Algorithms = slices.Clone(algs)
		default:
			pr.Algorithms = jose.DefaultAlgorithms()
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

// walker checks a YAML node tree against the yaml tags of this package's types and stores it in
// a Config. It expands aliases and merge keys (so that a problem names the path it lands in)
// and ${NAME}, and stores each scalar only in the one form its field accepts. yaml.v3's own
// decoding cannot do this: Node.Decode has no KnownFields, its errors have no path and may
// quote a value, and it accepts values the configuration refuses (yes, 1.5, 0x10, !!binary).
type walker struct {
	*problems
	env      func(string) (string, bool)
	budget   int
	overflow bool
	active   map[*yaml.Node]bool // alias targets being expanded, to refuse an alias inside its anchor
	end      pos                 // the furthest position seen in the subtree being walked
	// ref, when set, is the position of the alias or merge key being expanded: problems inside
	// sort there, so that they follow the paths they land in.
	ref pos
}

func (w *walker) spend() bool {
	if w.budget--; w.budget < 0 && !w.overflow {
		w.overflow = true
		w.add("", "configuration is too large (more than %d YAML nodes after alias expansion)", maxNodes)
	}
	return w.budget >= 0
}

func (w *walker) at(n *yaml.Node) pos {
	if w.ref != 0 {
		return w.ref
	}
	return pos(n.Line)<<32 | pos(n.Column)
}

// fail reports a problem with the value at path and marks the path as refused. It returns false.
func (w *walker) fail(path, format string, args ...any) bool {
	w.add(path, format, args...)
	w.bad[path] = true
	return false
}

// mark records where a path the walk does not descend into is.
func (w *walker) mark(path string, at pos) {
	if _, seen := w.spans[path]; !seen {
		w.spans[path] = span{at, at}
	}
}

var (
	durationType = reflect.TypeFor[Duration]()
	secretType   = reflect.TypeFor[Secret]()
	anyType      = reflect.TypeFor[any]()
)

// newValue returns a pointer to a new value of type t holding t's defaults.
func newValue(t reflect.Type) reflect.Value {
	v := reflect.New(t)
	setDefaults(v.Interface())
	return v
}

// invalid stands in for a refused string.
const invalid = "<invalid>"

// placeholder stands in for the refused value v, so that checks of the enclosing value (such as
// "exactly one of ...") do not report it a second time as missing: a string becomes invalid, a
// section keeps its defaults. A Config holding them is never returned. It reports whether v
// has a placeholder.
func placeholder(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		v.SetString(invalid)
	case reflect.Pointer:
		v.Set(newValue(v.Type().Elem()))
	case reflect.Struct:
	default:
		return false
	}
	return true
}

// walk checks n, the value at path, against v's type and stores it in v. It reports whether v
// was set: not when n is null (but a null option, such as `remove:`, is set) or refused (then a
// problem is recorded, the path is refused and v is unchanged).
func (w *walker) walk(path string, n *yaml.Node, v reflect.Value, depth int) bool {
	if !w.spend() {
		return false
	}
	if n.Kind == yaml.AliasNode {
		target := n.Alias
		switch {
		case target == nil:
			return w.fail(path, "invalid alias")
		case w.active[target]:
			return w.fail(path, "alias refers to a value that contains it")
		}
		w.active[target] = true
		defer delete(w.active, target)
		if w.ref == 0 {
			w.ref = w.at(n)
			defer func() { w.ref = 0 }()
		}
		return w.walk(path, target, v, depth)
	}
	w.end = max(w.end, w.at(n))
	if isNull(n) {
		if v.Kind() == reflect.Pointer {
			v.Set(newValue(v.Type().Elem()))
		}
		return v.Kind() == reflect.Pointer
	}
	return w.store(path, n, v, depth)
}

// store stores n, a value that is neither an alias nor null, in v by v's type.
func (w *walker) store(path string, n *yaml.Node, v reflect.Value, depth int) bool {
	switch t := v.Type(); {
	case t == anyType:
		return w.free(path, n, v, depth)
	case t.Kind() == reflect.Pointer:
		p := newValue(t.Elem())
		if !w.walk(path, n, p.Elem(), depth) {
			return false
		}
		v.Set(p)
		return true
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Struct || t.Kind() == reflect.Map:
		return w.collection(path, n, v, depth)
	}
	return w.scalar(path, n, v)
}

// scalarOK reports whether n is a scalar this package reads, refusing tags such as !!binary.
func (w *walker) scalarOK(path string, n *yaml.Node, shape string) bool {
	if n.Kind != yaml.ScalarNode {
		return w.fail(path, "%s", shape)
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
		return true
	}
	return w.fail(path, "unsupported YAML tag %s", quote(n.ShortTag()))
}

// shapes is what a field of each scalar type must be.
var shapes = map[reflect.Type]string{
	reflect.TypeFor[string](): "must be a string",
	reflect.TypeFor[bool]():   "must be true or false",
	reflect.TypeFor[int]():    "must be an integer",
	durationType:              errBadDuration.Error(),
}

var (
	typedTags = map[reflect.Kind]string{reflect.Bool: "!!bool", reflect.Int: "!!int"}
	decimal   = regexp.MustCompile(`^[-+]?[0-9]+$`)
)

// scalar stores a string, Duration, bool or int. Strings keep the text they were written with
// (`client_id: 0123` is "0123") with ${NAME} expanded. Booleans and integers are YAML 1.2's
// true, false and decimal integers (not yes, on or 0x10), or a quoted "${NAME}" whose value
// is one (`db: "${REDIS_DB}"`).
func (w *walker) scalar(path string, n *yaml.Node, v reflect.Value) bool {
	shape := shapes[v.Type()]
	if !w.scalarOK(path, n, shape) {
		return false
	}
	s, tag := n.Value, n.ShortTag()
	want := typedTags[v.Kind()]
	if want == "" || tag == "!!str" && strings.Contains(s, "${") {
		var ok bool
		if s, ok = w.expand(path, s); !ok {
			return false
		}
	} else if tag != want {
		return w.fail(path, "%s", shape)
	}
	switch {
	case v.Type() == durationType:
		d, err := parseDuration(s)
		if err != nil {
			return w.fail(path, "%v", err)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil || tag == "!!str" && s != "true" && s != "false" {
			return w.fail(path, "%s", shape)
		}
		v.SetBool(b)
	case !decimal.MatchString(s):
		return w.fail(path, "must be a decimal integer")
	default:
		i, err := strconv.ParseInt(s, 10, strconv.IntSize)
		if err != nil {
			return w.fail(path, "integer out of range")
		}
		v.SetInt(i)
	}
	return true
}

// collection stores a mapping in a struct (by the yaml tags of its fields) or a map, or a list
// in a slice. A map or list with a refused element that has no placeholder is not stored:
// keeping the rest would shift indices and could widen what it allows.
func (w *walker) collection(path string, n *yaml.Node, v reflect.Value, depth int) bool {
	isList, isStruct, want := v.Kind() == reflect.Slice, v.Kind() == reflect.Struct, yaml.MappingNode
	if isList {
		want = yaml.SequenceNode
	}
	switch {
	case n.Kind == want:
	case isList:
		return w.fail(path, "must be a list")
	case path == "":
		return w.fail(path, "configuration must be a YAML mapping")
	default:
		return w.fail(path, "must be a mapping")
	}
	var entries []mapEntry
	var fields map[string][]int
	out, all := v, true
	switch {
	case isList:
		out = reflect.MakeSlice(v.Type(), 0, len(n.Content))
		for _, c := range n.Content {
			entries = append(entries, mapEntry{at: w.at(c), value: c, isString: true})
		}
	case isStruct:
		fields, entries = fieldsOf(v.Type()), w.entries(path, n)
	default:
		out, entries = reflect.MakeMapWithSize(v.Type(), len(n.Content)/2), w.entries(path, n)
	}
	for i, e := range entries {
		kp := keyPath(path, e.key)
		if isList {
			kp = indexPath(path, i)
		}
		index, known := fields[e.key]
		switch {
		case isStruct && known && e.isString:
			w.entry(kp, e, v.FieldByIndex(index), depth+1)
		case isStruct:
			w.mark(kp, e.at)
			w.add(kp, "unknown field")
		case !e.isString:
			all = w.fail(kp, "keys must be strings")
		default:
			// A null element is a JSON null in a free-form value and refused elsewhere (in a
			// list, with a placeholder).
			ev := newValue(v.Type().Elem()).Elem()
			ok := w.entry(kp, e, ev, depth+1)
			if !ok && isNull(e.value) {
				ok = ev.Type() == anyType || !w.fail(kp, "must not be null") && isList && placeholder(ev)
			}
			all = ok && all
			if isList {
				out = reflect.Append(out, ev)
			} else {
				out.SetMapIndex(reflect.ValueOf(e.key), ev)
			}
		}
	}
	if !isStruct && all {
		v.Set(out)
	}
	return all
}

// fieldsOf maps the YAML keys of struct type t to the index of their fields, with the fields of
// inline structs in line. A Secret takes two keys: its own for the inline value and the same
// with "_file" for the file.
func fieldsOf(t reflect.Type) map[string][]int {
	m := map[string][]int{}
	for _, f := range reflect.VisibleFields(t) {
		switch name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); {
		case name == "" || name == "-": // an inline struct (its fields follow), or filled by Load
		case f.Type == secretType:
			m[name], m[name+"_file"] = slices.Concat(f.Index, []int{0}), slices.Concat(f.Index, []int{1})
		default:
			m[name] = f.Index
		}
	}
	return m
}

// entry walks a map entry or list element, recording where its path is; a merged entry is
// walked as if referenced from its merge key. A refused value gets its placeholder.
func (w *walker) entry(path string, e mapEntry, v reflect.Value, depth int) bool {
	if e.merged && w.ref == 0 {
		w.ref = e.at
		defer func() { w.ref = 0 }()
	}
	saved := w.end
	w.end = e.at
	ok := w.walk(path, e.value, v, depth)
	if _, seen := w.spans[path]; !seen {
		w.spans[path] = span{e.at, w.end}
	}
	w.end = max(saved, w.end)
	return ok || w.bad[path] && placeholder(v)
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
			dup := Problem{Line: w.at(k).line(), Path: keyPath(path, key), Message: "duplicate key"}
			w.list = append(w.list, dup)
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
			w.mark(kp, at)
			w.fail(kp, "a merge key needs a mapping or a list of mappings")
			return nil
		}
		w.active[m] = true
		saved := w.ref
		w.ref = at
		out = append(out, w.entries(path, m)...)
		w.ref = saved
		delete(w.active, m)
	}
	return out
}

// jsonNumber is the JSON number grammar (RFC 8259 §6).
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// free stores a free-form value (a claim): scalars, lists and mappings of them. Numbers are
// json.Number with the digits written when they are valid JSON (so large integers keep their
// precision).
func (w *walker) free(path string, n *yaml.Node, v reflect.Value, depth int) bool {
	var t reflect.Type
	switch tag := n.ShortTag(); {
	case depth > maxDepth:
		return w.fail(path, "nested too deeply (more than %d levels)", maxDepth)
	case n.Kind == yaml.SequenceNode:
		t = reflect.TypeFor[[]any]()
	case n.Kind == yaml.MappingNode:
		t = reflect.TypeFor[map[string]any]()
	case !w.scalarOK(path, n, "unsupported value"):
		return false
	case tag == "!!int" || tag == "!!float":
		num, ok := w.number(path, n)
		if ok {
			v.Set(reflect.ValueOf(num))
		}
		return ok
	case tag == "!!bool":
		t = reflect.TypeFor[bool]()
	default:
		t = reflect.TypeFor[string]()
	}
	x := reflect.New(t).Elem()
	if !w.store(path, n, x, depth) {
		return false
	}
	v.Set(x)
	return true
}

// number reads a YAML number as a json.Number.
func (w *walker) number(path string, n *yaml.Node) (json.Number, bool) {
	var i int64
	var f float64
	switch {
	case jsonNumber.MatchString(n.Value):
		if f, _ = strconv.ParseFloat(n.Value, 64); !math.IsInf(f, 0) {
			return json.Number(n.Value), true
		}
	case n.ShortTag() == "!!int":
		if err := n.Decode(&i); err != nil {
			return "", w.fail(path, "integer out of range")
		}
		return json.Number(strconv.FormatInt(i, 10)), true
	case n.Decode(&f) == nil && !math.IsInf(f, 0) && !math.IsNaN(f):
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), true
	}
	return "", w.fail(path, "must be a finite number")
}

// envRef matches "$${" (a literal "${"), a ${NAME} reference, and an unterminated "${".
var (
	envRef  = regexp.MustCompile(`\$\$\{|\$\{[^}]*\}?`)
	envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// expand replaces each ${NAME} in s by the value of environment variable NAME. "$${" writes a
// literal "${"; any other "$" is kept. The values are inserted as text, never parsed, so they
// cannot add YAML structure, and are not expanded again.
func (w *walker) expand(path, s string) (string, bool) {
	ok := true
	s = envRef.ReplaceAllStringFunc(s, func(ref string) string {
		if ref == "$${" {
			return "${"
		}
		name, closed := strings.CutSuffix(ref[2:], "}")
		v, set := w.env(name)
		switch {
		case !closed:
			ok = w.fail(path, "unterminated ${ (write $${ for a literal ${)")
		case !envName.MatchString(name):
			// The text between the braces is not quoted: it may be part of an inline secret.
			ok = w.fail(path, "invalid ${...} reference: a name is letters, digits and _ "+
				"(write $${ for a literal ${)")
		case !set:
			ok = w.fail(path, "environment variable %s is not set", name)
		case !utf8.ValidString(v):
			ok = w.fail(path, "environment variable %s is not valid UTF-8", name)
		default:
			return v
		}
		return ""
	})
	return s, ok
}
