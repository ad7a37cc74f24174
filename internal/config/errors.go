package config

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	Line    int    // the key's line, or its nearest present ancestor's; 0 for the whole file
	Path    string // the field, e.g. routes[2].upstream.fetch.token_url; odd map keys as ["key"]
	Message string // what is wrong, never with a secret
}

// String formats p as "line N: path: message", leaving out what p lacks.
func (p Problem) String() string {
	s := p.Message
	if p.Path != "" {
		s = p.Path + ": " + s
	}
	if p.Line > 0 {
		s = fmt.Sprintf("line %d: %s", p.Line, s)
	}
	return s
}

// Errors is every problem of a configuration, in document order. Load and Parse return it (as
// *Errors) for any problem with the configuration itself.
type Errors struct {
	Problems []Problem // in document order
}

// Error returns one line per problem.
func (e *Errors) Error() string {
	if e == nil || len(e.Problems) == 0 {
		return "config: no problems"
	}
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// pos is a place in the document, line<<32 | column, so that positions compare as numbers; 0 is
// before everything.
type pos int64

func (p pos) line() int { return int(p >> 32) }

// span is where a path's key (or list item) starts and where its value's text ends.
type span struct{ start, end pos }

// problems collects problems and where each path is in the document, so that the final list is
// in document order whatever order the checks ran in.
type problems struct {
	list, warnings []Problem
	spans          map[string]span
	// bad holds the paths whose value the walk refused. Once walked is set, problems under them
	// are dropped: they would only repeat the refusal in other words (e.g. "is required").
	bad    map[string]bool
	walked bool
}

func (p *problems) add(path, format string, args ...any) {
	if !p.walked || !p.refused(path) {
		p.list = append(p.list, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
}

// refused reports whether path or a path above it was refused.
func (p *problems) refused(path string) bool {
	_, above := nearest(path, func(a string) bool { return p.bad[a] })
	return above || p.bad[path]
}

func (p *problems) warn(path, format string, args ...any) {
	p.warnings = append(p.warnings, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// result returns the problems in document order as *Errors (nil when none), each with its line.
// A problem about a path present in the file sorts at its key; one about a missing path right
// after the text of its nearest present ancestor. Ties keep their order.
func (p *problems) result() *Errors {
	type keyed struct {
		at pos // twice the position, plus one when the path is missing
		Problem
	}
	var ks []keyed
	seen := map[Problem]bool{}
	for _, pr := range p.list {
		if seen[pr] {
			continue
		}
		seen[pr] = true
		s, ok := p.spans[pr.Path]
		at := 2 * s.start
		if !ok && pr.Path != "" {
			anc, _ := nearest(pr.Path, func(a string) bool { _, ok := p.spans[a]; return ok })
			s = p.spans[anc]
			at = 2*s.end + 1
		}
		if pr.Line == 0 {
			pr.Line = s.start.line()
		}
		ks = append(ks, keyed{at, pr})
	}
	if len(ks) == 0 {
		return nil
	}
	slices.SortStableFunc(ks, func(a, b keyed) int { return cmp.Compare(a.at, b.at) })
	out := &Errors{}
	for _, k := range ks {
		out.Problems = append(out.Problems, k.Problem)
	}
	return out
}

// plainKey matches map keys written after a dot; anything else is written ["key"].
var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// keyPath returns the path of key under base.
func keyPath(base, key string) string {
	switch {
	case !plainKey.MatchString(key):
		return base + "[" + strconv.Quote(key) + "]"
	case base == "":
		return key
	}
	return base + "." + key
}

// indexPath returns the path of element i under base.
func indexPath(base string, i int) string { return base + "[" + strconv.Itoa(i) + "]" }

// nearest returns the longest path above path (a prefix ending before a '.' or '[') that has
// reports, or "" and whether has(""). A prefix ending inside a quoted key is never a path, so
// it is never reported.
func nearest(path string, has func(string) bool) (string, bool) {
	for i := len(path) - 1; i > 0; i-- {
		if (path[i] == '.' || path[i] == '[') && has(path[:i]) {
			return path[:i], true
		}
	}
	return "", has("")
}

// quote returns s quoted for a message, shortened to one readable line. Only values that are
// never secret (names, algorithms, scopes, methods) are passed to it.
func quote(s string) string {
	if r := []rune(s); len(r) > 64 {
		s = string(r[:64]) + "…"
	}
	return strconv.Quote(s)
}
