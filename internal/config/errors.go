package config

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Path names the field with dots and indices, e.g. routes[2].upstream.fetch.token_url; map
	// keys that are not plain words are written ["key"]. Empty for the file as a whole.
	Path string
	// Message says what is wrong. It never contains a secret.
	Message string
}

// String formats p as "path: message" (just the message when Path is empty).
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Errors is every problem of a configuration, in document order. Load and Parse return it (as
// *Errors) for any problem with the configuration itself.
type Errors struct {
	Problems []Problem
}

// Error returns one "path: message" line per problem.
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

func (a pos) less(b pos) bool {
	if a.line != b.line {
		return a.line < b.line
	}
	return a.col < b.col
}

func maxPos(a, b pos) pos {
	if a.less(b) {
		return b
	}
	return a
}

// span is where a path's key (or list item) starts and where its value's text ends.
type span struct{ start, end pos }

// problems collects problems while remembering where each path is in the document, so that the
// final list is in document order whatever order the checks ran in.
type problems struct {
	list  []Problem
	spans map[string]span
	// bad holds paths whose value was refused while walking the document: later checks would
	// only repeat the same problem in other words (e.g. "is required"), so theirs are dropped.
	bad map[string]bool
	// warnings are allowed but probably wrong; they never make the configuration invalid.
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

// under reports whether path is anc or lies below it.
func under(path, anc string) bool {
	if path == anc {
		return true
	}
	if !strings.HasPrefix(path, anc) {
		return false
	}
	if anc == "" {
		return true
	}
	switch path[len(anc)] {
	case '.', '[':
		return true
	}
	return false
}

// result sorts the problems in document order and returns them as *Errors (nil when none).
// A problem about a path present in the file sorts at its key; one about a missing path sorts
// right after the text of its nearest present ancestor. Ties keep the order they were found in.
func (p *problems) result() *Errors {
	if len(p.list) == 0 {
		return nil
	}
	type keyed struct {
		at      pos
		missing bool
		seq     int
		prob    Problem
	}
	ks := make([]keyed, 0, len(p.list))
	seen := map[Problem]bool{}
	for i, pr := range p.list {
		if seen[pr] {
			continue
		}
		seen[pr] = true
		k := keyed{seq: i, prob: pr}
		if s, ok := p.spans[pr.Path]; ok {
			k.at = s.start
		} else {
			k.missing = true
			anc := pr.Path
			for anc != "" {
				anc = parentPath(anc)
				if s, ok := p.spans[anc]; ok {
					k.at = s.end
					break
				}
			}
		}
		ks = append(ks, k)
	}
	sort.SliceStable(ks, func(i, j int) bool {
		a, b := ks[i], ks[j]
		if a.at != b.at {
			return a.at.less(b.at)
		}
		if a.missing != b.missing {
			return !a.missing
		}
		return a.seq < b.seq
	})
	out := &Errors{Problems: make([]Problem, len(ks))}
	for i, k := range ks {
		out.Problems[i] = k.prob
	}
	return out
}

// plainKey matches map keys written after a dot; anything else is written ["key"].
var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// keyPath returns the path of key under base.
func keyPath(base, key string) string {
	if !plainKey.MatchString(key) {
		return base + "[" + strconv.Quote(key) + "]"
	}
	if base == "" {
		return key
	}
	return base + "." + key
}

// indexPath returns the path of element i under base.
func indexPath(base string, i int) string {
	return base + "[" + strconv.Itoa(i) + "]"
}

// parentPath strips the last element of a path built by keyPath and indexPath.
func parentPath(path string) string {
	if strings.HasSuffix(path, "]") {
		// Either [n] or ["key"]; a quoted key may itself contain brackets and dots, so scan
		// for the opening of the final bracket carefully.
		if strings.HasSuffix(path, `"]`) {
			for i := len(path) - 3; i >= 1; i-- {
				if path[i] == '"' && path[i-1] == '[' {
					if _, err := strconv.Unquote(path[i : len(path)-1]); err == nil {
						return path[:i-1]
					}
				}
			}
			return ""
		}
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
		return ""
	}
	if i := strings.LastIndexAny(path, ".]"); i >= 0 {
		if path[i] == ']' {
			return path[:i+1]
		}
		return path[:i]
	}
	return ""
}

// quote returns s quoted for a message, shortened so a message stays one readable line. Only
// values that are never secret (names, algorithms, scopes, methods) are passed to it.
func quote(s string) string {
	const max = 64
	r := []rune(s)
	if len(r) > max {
		s = string(r[:max]) + "…"
	}
	return strconv.Quote(s)
}
