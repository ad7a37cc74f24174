package httpx

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestCheckURL: the union of the cases the configuration, the JWKS fetcher and the upstream
// token requests tested for their own copies of the rule.
func TestCheckURL(t *testing.T) {
	tests := []struct {
		url       string
		allowHTTP bool
		want      []error // every problem reported; nil: accepted
	}{
		{"https://idp.example.com/jwks", false, nil},
		{"https://idp.example.com/token?tenant=a", false, nil},
		{"http://127.0.0.1:8080/jwks", false, nil},
		{"http://127.9.9.9/jwks", false, nil},
		{"http://[::1]:80/jwks", false, nil},
		{"http://localhost/jwks", false, nil},
		{"http://LocalHost:9/t", false, nil},
		{"HTTPS://idp.example.com/jwks", false, nil},
		{"http://idp.example.com/jwks", false, []error{ErrInsecureURL}},
		{"http://10.0.0.1/jwks", false, []error{ErrInsecureURL}},
		{"http://localhost.example.com/jwks", false, []error{ErrInsecureURL}},
		{"http://[::ffff:10.0.0.1]/jwks", false, []error{ErrInsecureURL}},
		{"http://idp.example.com/jwks", true, nil},
		{"ftp://idp.example.com/jwks", true, []error{ErrInsecureURL}},
		{"file:///etc/passwd", true, []error{ErrInvalidURL}},
		{"/jwks", false, []error{ErrInvalidURL}},
		{"https://", false, []error{ErrInvalidURL}},
		{"https://:443/jwks", false, []error{ErrInvalidURL}},
		{"https:idp.example.com", false, []error{ErrInvalidURL}},
		{"://bad", false, []error{ErrInvalidURL}},
		{"", false, []error{ErrInvalidURL}},
		{"https://u:p@idp.example.com/t", true, []error{ErrUserinfo}},
		{"https://u@idp.example.com/t", false, []error{ErrUserinfo}},
		{"https://idp.example.com/t#frag", false, []error{ErrFragment}},
		{"https://idp.example.com/t#", false, []error{ErrFragment}},
		{"http://u:p@idp.example.com/t#x", false, []error{ErrInsecureURL, ErrUserinfo, ErrFragment}},
	}
	all := []error{ErrInvalidURL, ErrInsecureURL, ErrUserinfo, ErrFragment}
	for _, tt := range tests {
		u, err := CheckURL(tt.url, tt.allowHTTP)
		if tt.want == nil {
			if err != nil || u == nil {
				t.Errorf("CheckURL(%q, %v) = %v, %v; want accepted", tt.url, tt.allowHTTP, u, err)
			}
			continue
		}
		if u != nil {
			t.Errorf("CheckURL(%q, %v) returned a URL with an error", tt.url, tt.allowHTTP)
		}
		for _, e := range all {
			wanted := false
			for _, w := range tt.want {
				wanted = wanted || w == e
			}
			if errors.Is(err, e) != wanted {
				t.Errorf("CheckURL(%q, %v) = %v; errors.Is(%v) = %v, want %v", tt.url, tt.allowHTTP, err, e, !wanted, wanted)
			}
		}
	}
}

func TestCheckURLNeverQuotesTheURL(t *testing.T) {
	const raw = "http://alice:s3cret@idp.example.com/t?k=v#f9g"
	_, err := CheckURL(raw, false)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, part := range []string{"s3cret", "alice", "idp.example.com", "f9g", "k=v"} {
		if strings.Contains(err.Error(), part) {
			t.Errorf("error %q quotes %q", err, part)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		host string
		want bool
	}{
		{"localhost", true}, {"LOCALHOST", true}, {"127.0.0.1", true}, {"127.255.0.9", true}, {"::1", true},
		{"", false}, {"localhost.", false}, {"[::1]", false}, {"128.0.0.1", false}, {"10.0.0.1", false},
		{"::2", false}, {"example.com", false}, {"0.0.0.0", false},
	}
	for _, tt := range tests {
		if got := IsLoopback(tt.host); got != tt.want {
			t.Errorf("IsLoopback(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

// TestNoRedirect: a 3xx comes back as the response, the target is never asked, and the
// caller's client keeps its own policy.
func TestNoRedirect(t *testing.T) {
	var followed int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed++
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	base := srv.Client()
	for name, c := range map[string]*http.Client{"nil": NoRedirect(nil), "copy": NoRedirect(base), "default": NewClient()} {
		resp, err := c.Get(srv.URL + "/jwks")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Errorf("%s: status %d, want 302", name, resp.StatusCode)
		}
	}
	if followed != 0 {
		t.Fatalf("redirect followed %d times", followed)
	}
	if base.CheckRedirect != nil {
		t.Fatal("the caller's client was modified")
	}
}
