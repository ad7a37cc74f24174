package config

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Line is where in the file the problem is: the line of the key, or, for a key the file
	// lacks, of its nearest ancestor present. 0 for the file as a whole (and for warnings).
	Line int
	// Path names the field with dots and indices, e.g. routes[2].upstream.fetch.token_url; map
	// keys that are not plain words are written ["key"]. Empty for the file as a whole.
	Path string
	// Message says what is wrong. It never contains a secret.
	Message string
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
	Problems []Problem
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

// pos is a place in the document; the zero pos is before everything.
type pos struct{ line, col int }

func (a pos) cmp(b pos) int {
	if a.line != b.line {
		return a.line - b.line
	}
	return a.col - b.col
}

func maxPos(a, b pos) pos {
	if a.cmp(b) < 0 {
		return b
	}
	return a
}

// span is where a path's key (or list item) starts and where its value's text ends.
type span struct{ start, end pos }

// problems collects problems and where each path is in the document, so that the final list is
// in document order whatever order the checks ran in.
type problems struct {
	list  []Problem
	spans map[string]span
	// bad holds paths whose value was refused by the walk: later checks would only repeat the
	// problem in other words (e.g. "is required"), so theirs are dropped.
	bad      map[string]bool
	warnings []Problem
}

func newProblems() *problems {
	return &problems{spans: map[string]span{}, bad: map[string]bool{}}
}

func (p *problems) add(path, format string, args ...any) {
	p.list = append(p.list, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (p *problems) warn(path, format string, args ...any) {
	p.warnings = append(p.warnings, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// dropRefused drops the problems after the first n that lie under a refused path.
func (p *problems) dropRefused(n int) {
	kept := p.list[:n]
	for _, pr := range p.list[n:] {
		if !slices.ContainsFunc(slices.Collect(maps.Keys(p.bad)), func(b string) bool { return under(pr.Path, b) }) {
			kept = append(kept, pr)
		}
	}
	p.list = kept
}

// under reports whether path is anc or lies below it.
func under(path, anc string) bool {
	return path == anc || anc == "" || strings.HasPrefix(path, anc) && strings.ContainsRune(".[", rune(path[len(anc)]))
}

// result sorts the problems in document order, gives each its line and returns them as *Errors
// (nil when none). A problem about a path present in the file sorts at its key; one about a
// missing path right after the text of its nearest present ancestor. Ties keep their order.
func (p *problems) result() *Errors {
	type keyed struct {
		at      pos
		missing bool
		prob    Problem
	}
	var ks []keyed
	seen := map[Problem]bool{}
	for _, pr := range p.list {
		if seen[pr] {
			continue
		}
		seen[pr] = true
		k := keyed{prob: pr}
		s, ok := p.spans[pr.Path]
		k.at = s.start
		for anc := pr.Path; !ok && anc != ""; {
			anc = parentPath(anc)
			s, ok = p.spans[anc]
			k.at, k.missing = s.end, true
		}
		if k.prob.Line == 0 {
			k.prob.Line = s.start.line
		}
		ks = append(ks, k)
	}
	if len(ks) == 0 {
		return nil
	}
	slices.SortStableFunc(ks, func(a, b keyed) int {
		if c := a.at.cmp(b.at); c != 0 {
			return c
		}
		switch {
		case a.missing == b.missing:
			return 0
		case a.missing:
			return 1
		}
		return -1
	})
	out := &Errors{}
	for _, k := range ks {
		out.Problems = append(out.Problems, k.prob)
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

// parentPath strips the last element of a path built by keyPath and indexPath.
func parentPath(path string) string {
	if strings.HasSuffix(path, `"]`) {
		// A quoted key may itself hold brackets, dots and quotes: find the [" that opens a
		// string that unquotes.
		for i := len(path) - 3; i >= 1; i-- {
			if path[i] == '"' && path[i-1] == '[' {
				if _, err := strconv.Unquote(path[i : len(path)-1]); err == nil {
					return path[:i-1]
				}
			}
		}
		return ""
	}
	if i := strings.LastIndexAny(path, ".["); i >= 0 {
		return path[:i]
	}
	return ""
}

// quote returns s quoted for a message, shortened to one readable line. Only values that are
// never secret (names, algorithms, scopes, methods) are passed to it.
func quote(s string) string {
	if r := []rune(s); len(r) > 64 {
		s = string(r[:64]) + "…"
	}
	return strconv.Quote(s)
}
