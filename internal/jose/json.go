package jose

import (
	"bytes"
	"encoding/json"
	"io"
	"unicode/utf8"
)

// maxJSONDepth bounds the nesting of objects and arrays in a header, a claims
// set or a JWK. Real tokens nest two or three levels; the bound keeps hostile
// inputs ("[[[[…" 5000 deep) from costing recursion.
const maxJSONDepth = 32

// decodeStrictObject decodes data as exactly one JSON object and rejects what
// encoding/json would silently accept and other parsers read differently
// (RFC 8725 §3.7, RFC 7519 §4 "Claim Names MUST be unique", RFC 7515 §5.2
// step 4 for Header Parameter names):
//   - invalid UTF-8 (Go would replace it with U+FFFD),
//   - a member name repeated in any object (Go keeps the last one, other
//     parsers keep the first),
//   - nesting deeper than maxJSONDepth,
//   - anything other than a single object (trailing data, arrays, scalars).
//
// Numbers are returned as json.Number so that the caller decides how to read
// them. The returned reason is a fixed string suitable for joseError.
func decodeStrictObject(data []byte) (map[string]any, string) {
	if !utf8.Valid(data) {
		return nil, "invalid UTF-8"
	}
	if !surrogatesPaired(data) {
		return nil, "unpaired UTF-16 surrogate escape"
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, "invalid JSON"
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, "not a JSON object"
	}
	obj, reason := readObject(dec, 1)
	if reason != "" {
		return nil, reason
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, "trailing data after JSON object"
	}
	return obj, ""
}

// surrogatesPaired reports whether every \uD800–\uDFFF escape in data is
// a high surrogate immediately followed by a low one. encoding/json turns an
// unpaired one into U+FFFD while other parsers reject it or keep it (RFC 8259
// §8.2: "unpredictable"); refusing it removes one more parser differential.
// Backslashes only occur inside strings in JSON, so a linear scan suffices; an
// invalid escape is left for the JSON decoder to reject.
func surrogatesPaired(data []byte) bool {
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		if i+1 >= len(data) || data[i+1] != 'u' {
			i++ // skip the escaped character (may itself be a backslash)
			continue
		}
		r, ok := hex4(data, i+2)
		if !ok {
			return true // malformed escape: the decoder reports it
		}
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return false // low surrogate without a high one
		case r >= 0xD800 && r <= 0xDBFF:
			if i+11 >= len(data) || data[i+6] != '\\' || data[i+7] != 'u' {
				return false
			}
			lo, ok := hex4(data, i+8)
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return false
			}
			i += 11
		default:
			i += 5
		}
	}
	return true
}

func hex4(data []byte, at int) (rune, bool) {
	if at+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[at : at+4] {
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

func readValue(dec *json.Decoder, tok json.Token, depth int) (any, string) {
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			return readObject(dec, depth+1)
		case '[':
			return readArray(dec, depth+1)
		default:
			return nil, "invalid JSON"
		}
	case string, json.Number, bool, nil:
		return v, ""
	default:
		return nil, "invalid JSON"
	}
}

// readObject reads members after an opening '{' up to and including '}'.
func readObject(dec *json.Decoder, depth int) (map[string]any, string) {
	if depth > maxJSONDepth {
		return nil, "JSON nested too deeply"
	}
	obj := make(map[string]any)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, "invalid JSON"
		}
		name, ok := tok.(string)
		if !ok {
			return nil, "invalid JSON"
		}
		if _, dup := obj[name]; dup {
			return nil, "duplicate JSON member name"
		}
		tok, err = dec.Token()
		if err != nil {
			return nil, "invalid JSON"
		}
		v, reason := readValue(dec, tok, depth)
		if reason != "" {
			return nil, reason
		}
		obj[name] = v
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, "invalid JSON"
	}
	return obj, ""
}

// readArray reads elements after an opening '[' up to and including ']'.
func readArray(dec *json.Decoder, depth int) ([]any, string) {
	if depth > maxJSONDepth {
		return nil, "JSON nested too deeply"
	}
	arr := []any{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, "invalid JSON"
		}
		v, reason := readValue(dec, tok, depth)
		if reason != "" {
			return nil, reason
		}
		arr = append(arr, v)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		return nil, "invalid JSON"
	}
	return arr, ""
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
