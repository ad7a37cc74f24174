package jose

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// refDecodeStrictObject is the encoding/json (Decoder.Token) implementation that
// decodeStrictObject replaced in issue 11, kept as the reference the single-pass parser
// must agree with: same accepted inputs, same values, and a rejection where it rejected.
func refDecodeStrictObject(data []byte) (map[string]any, string) {
	if !utf8.Valid(data) {
		return nil, "invalid UTF-8"
	}
	if !refSurrogatesPaired(data) {
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
	obj, reason := refReadObject(dec, 1)
	if reason != "" {
		return nil, reason
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, "trailing data after JSON object"
	}
	return obj, ""
}

func refSurrogatesPaired(data []byte) bool {
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		if i+1 >= len(data) || data[i+1] != 'u' {
			i++
			continue
		}
		r, ok := hex4(string(data), i+2)
		if !ok {
			return true
		}
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return false
		case r >= 0xD800 && r <= 0xDBFF:
			if i+11 >= len(data) || data[i+6] != '\\' || data[i+7] != 'u' {
				return false
			}
			lo, ok := hex4(string(data), i+8)
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

func refReadValue(dec *json.Decoder, tok json.Token, depth int) (any, string) {
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			return refReadObject(dec, depth+1)
		case '[':
			return refReadArray(dec, depth+1)
		}
		return nil, "invalid JSON"
	case string, json.Number, bool, nil:
		return v, ""
	}
	return nil, "invalid JSON"
}

func refReadObject(dec *json.Decoder, depth int) (map[string]any, string) {
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
		v, reason := refReadValue(dec, tok, depth)
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

func refReadArray(dec *json.Decoder, depth int) ([]any, string) {
	if depth > maxJSONDepth {
		return nil, "JSON nested too deeply"
	}
	arr := []any{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, "invalid JSON"
		}
		v, reason := refReadValue(dec, tok, depth)
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

// strictJSONCorpus holds the inputs of TestStrictJSON and the grammar's corners.
var strictJSONCorpus = []string{
	`{}`, ` {} `, "\t{\r\n}\n", `{"a":1}`, `{"a":-0}`, `{"a":-0.5e+10}`, `{"a":1E3}`, `{"a":1e-300}`,
	`{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":.5}`, `{"a":+1}`, `{"a":1e}`, `{"a":1e+}`, `{"a":0x10}`,
	`{"a":NaN}`, `{"a":Infinity}`, `{"a":1,}`, `{,}`, `{"a"}`, `{"a":}`, `{"a" 1}`, `{a:1}`, `{'a':1}`,
	`{"a":true,"b":false,"c":null}`, `{"a":tru}`, `{"a":truex}`, `{"a":nul}`, `{"a":True}`,
	`{"a":[]}`, `{"a":[1,]}`, `{"a":[,1]}`, `{"a":[1 2]}`, `{"a":[1,[2,[3,{}]]]}`, `{"a":{"b":{}}}`,
	`{"a":"\"\\\/\b\f\n\r\t"}`, `{"a":"\u0000"}`, `{"a":"\u00e9\u4e2d"}`, `{"a":"\x"}`, `{"a":"\u12"}`,
	`{"a":"\u12G4"}`, `{"a":"\ud83d\ude00"}`, `{"a":"\ud800"}`, `{"a":"\udc00x"}`, `{"a":"\ud800\u0041"}`,
	`{"a":"\ud800\ud800"}`, `{"a":"\\ud800"}`, `{"\u0061":1,"a":2}`, `{"a":1,"a":1}`, `{"x":{"a":1,"a":2}}`,
	`{"x":[{"a":1,"a":2}]}`, `{"a":"` + "\x01" + `"}`, `{"a":"` + "\x7f" + `"}`, `{"a":"é"}`,
	`{"a":"` + "\xff" + `"}`, `{"a":"` + "\xc0\xaf" + `"}`, "\ufeff{}", `{"a":1}{}`, `{"a":1}x`, `{"a":1} ` + "\n",
	`{"a":1`, `{"a":"x`, `[{"a":1}]`, `"a"`, `null`, `1`, ``, ` `, `{"a":1}]`, `{"a":1}}`,
	`{"a":` + strings.Repeat("[", maxJSONDepth-1) + strings.Repeat("]", maxJSONDepth-1) + `}`,
	`{"a":` + strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth) + `}`,
	strings.Repeat(`{"a":`, maxJSONDepth) + "1" + strings.Repeat("}", maxJSONDepth),
	strings.Repeat(`{"a":`, maxJSONDepth+1) + "1" + strings.Repeat("}", maxJSONDepth+1),
	`{"a":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`,
	`{"alg":"RS256","kid":"kid-rs256","x":"\uDBFF"}`, `{"aud":["a",1],"exp":1900000000.25}`,
	`{"a":"\u"}`, `{"a":"\`, `{"a":"\ud800\`, `{"a":"\ud800\u"}`, `{"a":"\ud800\udc0"}`,
}

// checkAgainstReference fails when the two decoders disagree on data: both must accept
// with equal values, or both reject. The reason may differ only where the input has two
// defects and the two parsers meet them in another order.
func checkAgainstReference(t *testing.T, data []byte) {
	t.Helper()
	got, gotReason := decodeStrictObject(data)
	want, wantReason := refDecodeStrictObject(data)
	if (gotReason == "") != (wantReason == "") {
		t.Fatalf("%q: reason %q, reference %q", data, gotReason, wantReason)
	}
	if gotReason == "" && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: decoded %#v, reference %#v", data, got, want)
	}
}

func TestStrictJSONMatchesReference(t *testing.T) {
	for _, in := range strictJSONCorpus {
		checkAgainstReference(t, []byte(in))
	}
	// The reasons the tests and logs rely on are the reference's.
	for in, reason := range map[string]string{
		`{"a":1,"a":2}`:               "duplicate JSON member name",
		`{"x":{"a":1,"a":2}}`:         "duplicate JSON member name",
		`{"a":"` + "\xff" + `"}`:      "invalid UTF-8",
		`{"a":"\ud800"}`:              "unpaired UTF-16 surrogate escape",
		`[1]`:                         "not a JSON object",
		`{"a":1}x`:                    "trailing data after JSON object",
		strings.Repeat(`[`, 40) + `]`: "not a JSON object",
		`{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`: "JSON nested too deeply",
	} {
		if _, got := decodeStrictObject([]byte(in)); got != reason {
			t.Errorf("%.40q: reason %q, want %q", in, got, reason)
		}
	}
}

// FuzzStrictJSON: the single-pass parser agrees with the encoding/json reference on any input.
func FuzzStrictJSON(f *testing.F) {
	for _, in := range strictJSONCorpus {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAgainstReference(t, data)
	})
}

// TestStrictJSONAllocations states the parser's cost: a typical claims set decodes with one
// allocation per map and per boxed value, and none per string or number copied.
func TestStrictJSONAllocations(t *testing.T) {
	payload := `{"iss":"https://idp.example.com/","sub":"alice","aud":"api://gateway","exp":1900000000,"iat":1800000000,"jti":"0123456789abcdef","scope":"read write","client_id":"my-client"}`
	allocs := testing.AllocsPerRun(100, func() {
		if _, reason := decodeStrictObjectString(payload); reason != "" {
			t.Fatal(reason)
		}
	})
	// The map (header and buckets) and eight values boxed in interfaces.
	if allocs > 11 {
		t.Fatalf("decoding the claims allocated %v times, budget 11", allocs)
	}
}
