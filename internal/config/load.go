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
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Limits on what a configuration may hold. They bound memory and time on hostile input (the
// file is trusted, but SIGHUP reloads and `validate` should never hang or blow up).
const (
	// maxConfigBytes bounds the configuration file.
	maxConfigBytes = 4 << 20
	// maxNodes bounds the number of YAML nodes visited, counting every expansion of an alias,
	// so a "billion laughs" document is refused quickly.
	maxNodes = 100_000
	// maxDepth bounds the nesting of free-form values (claims).
	maxDepth = 32
)

// Load reads the configuration file at path and returns it with defaults applied, *_file
// secrets resolved (relative paths are relative to the file's directory) and every rule checked.
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

// Parse is Load on the bytes of a configuration file. baseDir is the directory relative *_file
// paths are resolved against ("" means the current directory); env is as for Load. Every error
// it returns is a non-empty *Errors, and a nil error always comes with a non-nil *Config.
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

	w := &walker{p: p, env: env, present: map[string]bool{}, budget: maxNodes, active: map[*yaml.Node]bool{}}
	clean, ok := w.value("", root, reflect.TypeFor[Config](), 0)
	p.spans[""] = span{end: w.maxp}
	walked := len(p.list)

	cfg := &Config{}
	if ok {
		if err := decodeClean(clean, cfg); err != nil {
			// The walk only lets through values of the right shape, so this means a bug here,
			// not in the file. The decoder's text may quote values, so it is not shown.
			p.add("", "internal error decoding the configuration")
			return nil, p.result()
		}
	}
	applyDefaults(cfg, w.present)
	resolveFiles(cfg, baseDir, p)
	validate(cfg, p)

	// Drop later problems about values the walk already refused.
	if len(p.bad) > 0 {
		kept := p.list[:walked]
	next:
		for _, pr := range p.list[walked:] {
			for b := range p.bad {
				if under(pr.Path, b) {
					continue next
				}
			}
			kept = append(kept, pr)
		}
		p.list = kept
	}
	if errs := p.result(); errs != nil {
		return nil, errs
	}
	cfg.Warnings = p.warnings
	return cfg, nil
}

// parseYAML parses exactly one YAML document and returns its root node, or nil after adding a
// problem.
func parseYAML(data []byte, p *problems) (root *yaml.Node) {
	defer func() {
		// go.yaml.in/yaml/v3 turns its own failures into errors, but a configuration loader
		// must never take the process down, whatever the bytes.
		if r := recover(); r != nil {
			root = nil
			p.add("", "invalid YAML")
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.add("", "configuration is empty")
		} else {
			p.add("", "%s", yamlError(err))
		}
		return nil
	}
	var extra yaml.Node
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
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) != 1 {
			p.add("", "configuration is empty")
			return nil
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		p.add("", "configuration is empty")
		return nil
	}
	return n
}

var backquoted = regexp.MustCompile("`[^`]*`")

// yamlError returns the parser's message without any quoted piece of the document (which could
// be a secret), on one line.
func yamlError(err error) string {
	msg := backquoted.ReplaceAllString(err.Error(), "value")
	msg = strings.Join(strings.Fields(msg), " ")
	if !strings.HasPrefix(msg, "yaml:") {
		msg = "yaml: " + msg
	}
	return msg
}

// decodeClean decodes the checked tree through the json tags of the types.
func decodeClean(clean any, cfg *Config) error {
	b, err := json.Marshal(clean)
	if err != nil {
		return fmt.Errorf("marshal: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(cfg); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

// walker checks a YAML node tree against the Go types and produces a tree of plain values
// (map[string]any, []any, string, int64, bool, json.Number, nil) that encoding/json decodes
// into them.
type walker struct {
	p   *problems
	env func(string) (string, bool)
	// present holds the paths given a non-null value in the file; defaults apply to the others.
	present map[string]bool
	budget  int
	// active holds alias targets being expanded, to refuse an alias inside its own anchor.
	active map[*yaml.Node]bool
	// overflow is set once the budget is spent (and the problem reported).
	overflow bool
	// maxp is the furthest position seen in the subtree being walked.
	maxp pos
	// ref, when set, is the position of the alias or merge key being expanded.
	ref *pos
}

// spend counts one node against the budget; false once it is exhausted.
func (w *walker) spend() bool {
	w.budget--
	if w.budget >= 0 {
		return true
	}
	if !w.overflow {
		w.overflow = true
		w.p.add("", "configuration is too large (more than %d YAML nodes after alias expansion)", maxNodes)
	}
	return false
}

// at returns the position problems about n sort at: n's own, or, inside an alias or merged
// mapping, the position of the reference, so that problems follow the paths they land in.
func (w *walker) at(n *yaml.Node) pos {
	if w.ref != nil {
		return *w.ref
	}
	return pos{line: n.Line, col: n.Column}
}

// fail reports a problem with the value at path and marks the path as refused.
func (w *walker) fail(path, format string, args ...any) {
	w.p.add(path, format, args...)
	w.p.bad[path] = true
}

var (
	durationType = reflect.TypeFor[Duration]()
	anyType      = reflect.TypeFor[any]()
)

// invalid stands in for a refused string so that checks of the enclosing value (such as
// "exactly one of client_secret, client_secret_file") do not report it a second time as
// missing. A Config holding it is never returned: a refused value is always a problem.
const invalid = "<invalid>"

// placeholder returns the stand-in for a refused value of type t, if t has one.
func placeholder(t reflect.Type) (any, bool) {
	switch {
	case t == durationType:
		return nil, false
	case t.Kind() == reflect.String:
		return invalid, true
	case t.Kind() == reflect.Struct, t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
		return map[string]any{}, true
	}
	return nil, false
}

// value checks node n against type t. ok is false when there is no value to set: an absent or
// null value, or one that was refused (a problem is then recorded and the path marked bad).
func (w *walker) value(path string, n *yaml.Node, t reflect.Type, depth int) (out any, ok bool) {
	if !w.spend() {
		return nil, false
	}
	if n.Kind == yaml.AliasNode {
		target := n.Alias
		if target == nil {
			w.fail(path, "invalid alias")
			return nil, false
		}
		if w.active[target] {
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
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
			// `remove:` or `none:` with nothing after them mean the option is set.
			return map[string]any{}, true
		}
		return nil, false
	}
	switch {
	case t == durationType:
		s, ok := w.scalarString(path, n, "must be a duration such as 90s, 5m or 1h")
		if !ok {
			return nil, false
		}
		d, err := parseDuration(s)
		if err != nil {
			w.fail(path, "%s", err.Error())
			return nil, false
		}
		return d.String(), true
	case t.Kind() == reflect.Pointer:
		return w.value(path, n, t.Elem(), depth)
	case t.Kind() == reflect.Struct:
		return w.structValue(path, n, t, depth)
	case t.Kind() == reflect.String:
		return w.scalarString(path, n, "must be a string")
	case t.Kind() == reflect.Bool:
		return w.boolValue(path, n)
	case t.Kind() == reflect.Int:
		return w.intValue(path, n)
	case t.Kind() == reflect.Slice:
		return w.sliceValue(path, n, t, depth)
	case t.Kind() == reflect.Map:
		return w.mapValue(path, n, t, depth)
	case t == anyType:
		return w.freeValue(path, n, depth)
	}
	// Unreachable for the types of this package.
	w.fail(path, "unsupported field type")
	return nil, false
}

// scalarOK reports whether n is a scalar this package reads, refusing YAML tags such as !!binary
// or application tags.
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

func (w *walker) intValue(path string, n *yaml.Node) (any, bool) {
	const shape = "must be an integer"
	if !w.scalarOK(path, n, shape) {
		return nil, false
	}
	s := n.Value
	switch n.ShortTag() {
	case "!!int":
	case "!!str":
		// ${NAME} may give the number, e.g. `db: ${REDIS_DB}`.
		if !strings.Contains(s, "${") {
			w.fail(path, shape)
			return nil, false
		}
		var ok bool
		if s, ok = w.expand(path, s); !ok {
			return nil, false
		}
	default:
		w.fail(path, shape)
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
	return v, true
}

func (w *walker) boolValue(path string, n *yaml.Node) (any, bool) {
	const shape = "must be true or false"
	if !w.scalarOK(path, n, shape) {
		return nil, false
	}
	switch n.ShortTag() {
	case "!!bool":
		v, err := strconv.ParseBool(n.Value)
		if err != nil {
			w.fail(path, shape)
			return nil, false
		}
		return v, true
	case "!!str":
		if strings.Contains(n.Value, "${") {
			s, ok := w.expand(path, n.Value)
			if !ok {
				return nil, false
			}
			switch s {
			case "true":
				return true, true
			case "false":
				return false, true
			}
		}
	}
	w.fail(path, shape)
	return nil, false
}

func (w *walker) sliceValue(path string, n *yaml.Node, t reflect.Type, depth int) (any, bool) {
	if n.Kind != yaml.SequenceNode {
		w.fail(path, "must be a list")
		return nil, false
	}
	out := make([]any, 0, len(n.Content))
	all := true
	for i, c := range n.Content {
		ip := indexPath(path, i)
		v, ok := w.entry(ip, w.at(c), c, t.Elem(), depth+1)
		if !ok && isNull(c) {
			if t.Elem() == anyType {
				// A null inside a free-form list is a JSON null.
				out = append(out, nil)
				continue
			}
			w.fail(ip, "must not be null")
		}
		if !ok && w.p.bad[ip] {
			v, ok = placeholder(t.Elem())
		}
		if !ok {
			all = false
			continue
		}
		out = append(out, v)
	}
	if !all {
		// A list with a refused element is dropped whole: keeping the rest would shift indices
		// and could widen what the list allows.
		return nil, false
	}
	return out, true
}

// entry walks one map entry or list element found at position at, recording where its path is
// in the document.
func (w *walker) entry(path string, at pos, n *yaml.Node, t reflect.Type, depth int) (any, bool) {
	saved := w.maxp
	w.maxp = at
	v, ok := w.value(path, n, t, depth)
	if _, seen := w.p.spans[path]; !seen {
		w.p.spans[path] = span{start: at, end: w.maxp}
	}
	w.maxp = maxPos(saved, w.maxp)
	if ok {
		w.present[path] = true
	}
	return v, ok
}

func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// mapEntry is one key/value pair of a mapping, after merge keys are expanded.
type mapEntry struct {
	key      string
	at       pos
	value    *yaml.Node
	isString bool
	// merged entries are walked as if referenced from at, like an alias.
	merged bool
}

// entries returns the pairs of mapping n with merge keys (<<) expanded as YAML defines them:
// keys written in the mapping win over merged ones, and earlier merge sources win over later
// ones. Duplicate keys written in the mapping are reported.
func (w *walker) entries(path string, n *yaml.Node) []mapEntry {
	var own []mapEntry
	var merged []mapEntry
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !w.spend() {
			break
		}
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			for _, e := range w.mergeSources(path, w.at(k), v) {
				e.at, e.merged = w.at(k), true
				merged = append(merged, e)
			}
			continue
		}
		key, isString := keyText(k)
		if seen[key] {
			w.p.add(keyPath(path, key), "duplicate key")
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
	var srcs []*yaml.Node
	switch deref(v).Kind {
	case yaml.MappingNode:
		srcs = []*yaml.Node{v}
	case yaml.SequenceNode:
		srcs = deref(v).Content
	}
	var out []mapEntry
	for _, s := range srcs {
		if w.overflow {
			return nil
		}
		m := deref(s)
		if m.Kind != yaml.MappingNode || w.active[m] {
			srcs = nil
			break
		}
		w.active[m] = true
		saved := w.ref
		w.ref = &at
		out = append(out, w.entries(path, m)...)
		w.ref = saved
		delete(w.active, m)
	}
	if srcs == nil {
		kp := keyPath(path, "<<")
		if _, seen := w.p.spans[kp]; !seen {
			w.p.spans[kp] = span{start: at, end: at}
		}
		w.fail(kp, "a merge key needs a mapping or a list of mappings")
		return nil
	}
	return out
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// keyText returns the text of a mapping key; isString is false for keys that are not scalars.
func keyText(k *yaml.Node) (key string, isString bool) {
	k = deref(k)
	if k.Kind != yaml.ScalarNode {
		return "(complex key)", false
	}
	return k.Value, true
}

// walkEntry walks a merged or written entry, as if referenced from its merge key when merged.
func (w *walker) walkEntry(path string, e mapEntry, t reflect.Type, depth int) (any, bool) {
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

func (w *walker) structValue(path string, n *yaml.Node, t reflect.Type, depth int) (any, bool) {
	if n.Kind != yaml.MappingNode {
		if path == "" {
			w.fail(path, "configuration must be a YAML mapping")
		} else {
			w.fail(path, "must be a mapping")
		}
		return nil, false
	}
	fields := jsonFields(t)
	out := map[string]any{}
	for _, e := range w.entries(path, n) {
		kp := keyPath(path, e.key)
		f, known := fields[e.key]
		if !known || !e.isString {
			if _, seen := w.p.spans[kp]; !seen {
				w.p.spans[kp] = span{start: e.at, end: e.at}
			}
			w.p.add(kp, "unknown field")
			continue
		}
		if v, ok := w.walkEntry(kp, e, f.Type, depth+1); ok {
			out[e.key] = v
		}
	}
	return out, true
}

func (w *walker) mapValue(path string, n *yaml.Node, t reflect.Type, depth int) (any, bool) {
	if n.Kind != yaml.MappingNode {
		w.fail(path, "must be a mapping")
		return nil, false
	}
	out := map[string]any{}
	all := true
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
			out[e.key] = v
		case t.Elem() == anyType && isNull(e.value):
			out[e.key] = nil
		case isNull(e.value):
			w.fail(kp, "must not be null")
			all = false
		default:
			all = false
		}
	}
	if !all {
		return nil, false
	}
	return out, true
}

// jsonNumber is the JSON number grammar (RFC 8259 section 6).
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// freeValue checks a free-form value (a claim): scalars, lists and mappings of them. Numbers
// become json.Number, keeping the digits written when they are valid JSON (so large integers
// keep their precision).
func (w *walker) freeValue(path string, n *yaml.Node, depth int) (any, bool) {
	if depth > maxDepth {
		w.fail(path, "nested too deeply (more than %d levels)", maxDepth)
		return nil, false
	}
	switch n.Kind {
	case yaml.SequenceNode:
		return w.sliceValue(path, n, reflect.TypeFor[[]any](), depth)
	case yaml.MappingNode:
		return w.mapValue(path, n, reflect.TypeFor[map[string]any](), depth)
	case yaml.ScalarNode:
	default:
		w.fail(path, "unsupported value")
		return nil, false
	}
	if !w.scalarOK(path, n, "unsupported value") {
		return nil, false
	}
	switch n.ShortTag() {
	case "!!int", "!!float":
		if jsonNumber.MatchString(n.Value) {
			if f, err := strconv.ParseFloat(n.Value, 64); err == nil || !math.IsInf(f, 0) {
				return json.Number(n.Value), true
			}
			w.fail(path, "must be a finite number")
			return nil, false
		}
		if n.ShortTag() == "!!int" {
			var i int64
			if err := n.Decode(&i); err == nil {
				return json.Number(strconv.FormatInt(i, 10)), true
			}
			w.fail(path, "integer out of range")
			return nil, false
		}
		var f float64
		if err := n.Decode(&f); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			w.fail(path, "must be a finite number")
			return nil, false
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), true
	case "!!bool":
		return w.boolValue(path, n)
	}
	return w.expand(path, n.Value)
}

// jsonFields maps the json names of t's fields to the fields (json:"-" fields excluded).
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.StructField)
	}
	m := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		m[name] = f
	}
	fieldCache.Store(t, m)
	return m
}

// fieldCache memoizes jsonFields; the types are fixed, so it is a cache, not state.
var fieldCache sync.Map

// envName is a valid ${NAME}.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expand replaces each ${NAME} in s by the value of environment variable NAME. "$${" writes a
// literal "${". Any other "$" is kept as is. The values are inserted as text, never parsed, so
// they cannot add YAML structure, and are not expanded again.
func (w *walker) expand(path, s string) (string, bool) {
	if !strings.Contains(s, "${") {
		return s, true
	}
	var b strings.Builder
	ok := true
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		if i > 0 && s[i-1] == '$' {
			// "$${" is a literal "${".
			b.WriteString(s[:i-1])
			b.WriteString("${")
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
		if !envName.MatchString(name) {
			// The text between the braces is not quoted: it may be part of an inline secret.
			w.fail(path, "invalid ${...} reference: a name is letters, digits and _ (write $${ for a literal ${)")
			ok = false
			continue
		}
		v, set := w.env(name)
		switch {
		case !set:
			w.fail(path, "environment variable %s is not set", name)
			ok = false
		case !utf8.ValidString(v):
			w.fail(path, "environment variable %s is not valid UTF-8", name)
			ok = false
		default:
			b.WriteString(v)
		}
	}
	if !ok {
		return "", false
	}
	return b.String(), true
}

// readFile reads a file named in the configuration: relative names are relative to baseDir.
// It refuses anything but a regular file (a FIFO or device would block or never end) and
// anything larger than limit. Its errors name the file, never its content.
// resolvePath is name relative to baseDir (the configuration file's directory) unless absolute.
func resolvePath(baseDir, name string) string {
	if !filepath.IsAbs(name) && baseDir != "" {
		return filepath.Join(baseDir, name)
	}
	return name
}

func readFile(baseDir, name string, limit int64) ([]byte, error) {
	p := resolvePath(baseDir, name)
	q := strconv.Quote(p)
	fi, err := os.Stat(p)
	if err != nil {
		return nil, newFileError(q, err)
	}
	if fi.IsDir() {
		return nil, &fileError{msg: q + " is a directory"}
	}
	if !fi.Mode().IsRegular() {
		return nil, &fileError{msg: q + " is not a regular file"}
	}
	tooLarge := &fileError{msg: fmt.Sprintf("%s is larger than %d bytes", q, limit)}
	if fi.Size() > limit {
		return nil, tooLarge
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, newFileError(q, err)
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, newFileError(q, err)
	}
	if int64(len(data)) > limit {
		return nil, tooLarge
	}
	return data, nil
}

// fileError is a failure to read a file, with a message that names the file and the cause
// (e.g. "no such file or directory") and wraps the *fs.PathError when there is one.
type fileError struct {
	msg string
	err error
}

func (e *fileError) Error() string { return e.msg }
func (e *fileError) Unwrap() error { return e.err }

func newFileError(quoted string, err error) error {
	cause := err
	var pe *os.PathError
	if errors.As(err, &pe) {
		cause = pe.Err
	}
	return &fileError{msg: fmt.Sprintf("cannot read %s: %v", quoted, cause), err: err}
}
