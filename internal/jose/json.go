package jose

import (
	"encoding/json"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxJSONDepth bounds the nesting of objects and arrays in a header, a claims
// set or a JWK. Real tokens nest two or three levels; the bound keeps hostile
// inputs ("[[[[…" 5000 deep) from costing recursion.
const maxJSONDepth = 32

// decodeStrictObject decodes data as exactly one JSON object (RFC 8259) and
// rejects what encoding/json would silently accept and other parsers read
// differently (RFC 8725 §3.7, RFC 7519 §4 "Claim Names MUST be unique",
// RFC 7515 §5.2 step 4 for Header Parameter names):
//   - invalid UTF-8 (Go would replace it with U+FFFD),
//   - a \uD800–\uDFFF escape that is not a high surrogate immediately
//     followed by a low one (Go turns it into U+FFFD while other parsers
//     reject it or keep it; RFC 8259 §8.2: "unpredictable"),
//   - a member name repeated in any object, compared after unescaping (Go
//     keeps the last one, other parsers keep the first),
//   - nesting deeper than maxJSONDepth,
//   - anything other than a single object (trailing data, arrays, scalars).
//
// It is a single pass over the bytes (encoding/json's Decoder.Token, used
// before, cost a token's whole parse several times over: issue 11). The
// grammar is RFC 8259's exactly, as encoding/json accepts it: whitespace is
// space, tab, CR and LF only; numbers have no leading zeros, '+' or bare '.';
// strings hold no raw control character and only the eight short escapes and
// \uXXXX. Objects become map[string]any, arrays []any (never nil), numbers
// json.Number, the rest string, bool and nil, as encoding/json with UseNumber.
//
// Strings without escapes and numbers share the memory of one copy of data:
// a caller keeping a value beyond the token's life should copy it. The
// returned reason is a fixed string suitable for joseError.
func decodeStrictObject(data []byte) (map[string]any, string) {
	return decodeStrictObjectString(string(data))
}

// decodeStrictObjectString is decodeStrictObject on text already copied into
// a string.
func decodeStrictObjectString(s string) (map[string]any, string) {
	if !utf8.ValidString(s) {
		return nil, "invalid UTF-8"
	}
	p := jsonParser{s: s}
	p.skipSpace()
	if p.i >= len(p.s) || p.s[p.i] != '{' {
		return nil, "not a JSON object"
	}
	p.i++
	obj := p.object(1)
	if p.reason != "" {
		return nil, p.reason
	}
	p.skipSpace()
	if p.i != len(p.s) {
		return nil, "trailing data after JSON object"
	}
	return obj, ""
}

// jsonParser reads one JSON text; the first problem stops it and is kept in
// reason (a fixed text).
type jsonParser struct {
	s      string
	i      int
	reason string
}

func (p *jsonParser) fail(reason string) {
	if p.reason == "" {
		p.reason = reason
	}
}

func (p *jsonParser) skipSpace() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// value reads one value at the given depth (the depth of the container it
// is in, plus one for a container it opens).
func (p *jsonParser) value(depth int) any {
	p.skipSpace()
	if p.i >= len(p.s) {
		p.fail("invalid JSON")
		return nil
	}
	switch c := p.s[p.i]; {
	case c == '{':
		p.i++
		if m := p.object(depth + 1); m != nil {
			return m
		}
		return nil
	case c == '[':
		p.i++
		if a := p.array(depth + 1); a != nil {
			return a
		}
		return nil
	case c == '"':
		return p.str()
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	case strings.HasPrefix(p.s[p.i:], "true"):
		p.i += 4
		return true
	case strings.HasPrefix(p.s[p.i:], "false"):
		p.i += 5
		return false
	case strings.HasPrefix(p.s[p.i:], "null"):
		p.i += 4
		return nil
	}
	p.fail("invalid JSON")
	return nil
}

// object reads members after an opening '{' up to and including '}'; nil
// after a failure.
func (p *jsonParser) object(depth int) map[string]any {
	if depth > maxJSONDepth {
		p.fail("JSON nested too deeply")
		return nil
	}
	obj := make(map[string]any)
	p.skipSpace()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return obj
	}
	for {
		p.skipSpace()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			p.fail("invalid JSON")
			return nil
		}
		name := p.str()
		if p.reason != "" {
			return nil
		}
		if _, dup := obj[name]; dup {
			p.fail("duplicate JSON member name")
			return nil
		}
		p.skipSpace()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			p.fail("invalid JSON")
			return nil
		}
		p.i++
		v := p.value(depth)
		if p.reason != "" {
			return nil
		}
		obj[name] = v
		if more, ok := p.separator('}'); !ok {
			return nil
		} else if !more {
			return obj
		}
	}
}

// separator reads what follows a member or element: ',' (more is true) or the closing byte
// (more is false); anything else fails (ok is false).
func (p *jsonParser) separator(closing byte) (more, ok bool) {
	p.skipSpace()
	if p.i < len(p.s) {
		switch p.s[p.i] {
		case ',':
			p.i++
			return true, true
		case closing:
			p.i++
			return false, true
		}
	}
	p.fail("invalid JSON")
	return false, false
}

// array reads elements after an opening '[' up to and including ']'; nil
// after a failure, never nil otherwise.
func (p *jsonParser) array(depth int) []any {
	if depth > maxJSONDepth {
		p.fail("JSON nested too deeply")
		return nil
	}
	arr := []any{}
	p.skipSpace()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		return arr
	}
	for {
		v := p.value(depth)
		if p.reason != "" {
			return nil
		}
		arr = append(arr, v)
		if more, ok := p.separator(']'); !ok {
			return nil
		} else if !more {
			return arr
		}
	}
}

// number reads a number (RFC 8259 §6: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?)
// and returns its text as json.Number.
func (p *jsonParser) number() any {
	start := p.i
	if p.s[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.s) && p.s[p.i] == '0':
		p.i++
	case p.i < len(p.s) && '1' <= p.s[p.i] && p.s[p.i] <= '9':
		p.digits()
	default:
		p.fail("invalid JSON")
		return nil
	}
	if p.i < len(p.s) && p.s[p.i] == '.' {
		p.i++
		if p.digits() == 0 {
			p.fail("invalid JSON")
			return nil
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		if p.digits() == 0 {
			p.fail("invalid JSON")
			return nil
		}
	}
	return json.Number(p.s[start:p.i])
}

func (p *jsonParser) digits() int {
	start := p.i
	for p.i < len(p.s) && '0' <= p.s[p.i] && p.s[p.i] <= '9' {
		p.i++
	}
	return p.i - start
}

// str reads a string at an opening '"' and returns it unescaped ("" after a
// failure). Without escapes it is a substring of the input: no copy.
func (p *jsonParser) str() string {
	p.i++ // the opening quote
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return p.s[start : p.i-1]
		case c == '\\':
			return p.escaped(start)
		case c < 0x20:
			p.fail("invalid JSON") // RFC 8259 §7: control characters must be escaped
			return ""
		}
		p.i++ // UTF-8 was validated up front: continuation bytes are >= 0x80
	}
	p.fail("invalid JSON")
	return ""
}

// escaped continues str from the first backslash, building the value.
func (p *jsonParser) escaped(start int) string {
	// The value is never longer than its escaped text: size the buffer to the string, found
	// by skipping escape pairs to the closing quote. (Sizing it to the rest of the input made
	// a token of many short escaped strings cost memory quadratic in its length.)
	end := p.i
	for end < len(p.s) && p.s[end] != '"' {
		if p.s[end] == '\\' {
			end++
		}
		end++
	}
	b := make([]byte, 0, min(end, len(p.s))-start)
	b = append(b, p.s[start:p.i]...)
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return string(b)
		case c < 0x20:
			p.fail("invalid JSON")
			return ""
		case c != '\\':
			b = append(b, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.s) {
			break
		}
		e := p.s[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := hex4(p.s, p.i)
			if !ok {
				p.fail("invalid JSON")
				return ""
			}
			p.i += 4
			switch {
			case 0xDC00 <= r && r <= 0xDFFF:
				p.fail("unpaired UTF-16 surrogate escape") // a low surrogate without a high one
				return ""
			case 0xD800 <= r && r <= 0xDBFF:
				// RFC 8259 §7: a high surrogate must be followed by \u and a low one.
				lo, ok := rune(0), false
				if p.i+6 <= len(p.s) && p.s[p.i] == '\\' && p.s[p.i+1] == 'u' {
					lo, ok = hex4(p.s, p.i+2)
				}
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					p.fail("unpaired UTF-16 surrogate escape")
					return ""
				}
				p.i += 6
				r = utf16.DecodeRune(r, lo)
			}
			b = utf8.AppendRune(b, r)
		default:
			p.fail("invalid JSON")
			return ""
		}
	}
	p.fail("invalid JSON")
	return ""
}

// hex4 reads four hex digits at s[at:].
func hex4(s string, at int) (rune, bool) {
	if at+4 > len(s) {
		return 0, false
	}
	var r rune
	for i := at; i < at+4; i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// validKeyID reports whether kid is acceptable as a key identifier: a
// non-empty string of printable ASCII (0x20–0x7E) of at most maxKidBytes.
// RFC 7515 §4.1.4 leaves kid's structure open; we narrow it because the kid
// is attacker-chosen and ends up in maps, logs and metrics.
func validKeyID(kid string) bool {
	if kid == "" || len(kid) > MaxKeyIDBytes {
		return false
	}
	for i := 0; i < len(kid); i++ {
		if kid[i] < 0x20 || kid[i] > 0x7e {
			return false
		}
	}
	return true
}

// MaxKeyIDBytes is the longest kid accepted in a token header, a JWK or a SigningKey.
const MaxKeyIDBytes = 256
