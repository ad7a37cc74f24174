package testenv_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/testenv"
)

// TestDemoInstructionsWorkAsPrinted runs every command `tokengate demo` prints, with bash and
// curl, against a running rig, and checks what each one shows.
func TestDemoInstructionsWorkAsPrinted(t *testing.T) {
	testkit.Tool(t, "curl", "curl")
	s := startStack(t)
	var script strings.Builder
	script.WriteString("set -e\n")
	n := 0
	for _, line := range strings.Split(testenv.DemoInstructions(s), "\n") {
		cmd := strings.TrimSpace(line)
		if strings.HasPrefix(cmd, "TOKEN=") || strings.HasPrefix(cmd, "curl ") {
			n++
			script.WriteString("echo '=== cmd'\n" + cmd + "\necho\n")
		}
	}
	if n < 15 {
		t.Fatalf("only %d commands found in the instructions", n)
	}
	out, err := exec.Command("bash", "-c", script.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("commands failed: %v\n%s", err, out)
	}
	parts := strings.Split(string(out), "=== cmd\n")[1:]
	if len(parts) != n {
		t.Fatalf("%d outputs for %d commands:\n%s", len(parts), n, out)
	}
	want := []string{
		"",                             // TOKEN=…
		`"Authorization":["Bearer eyJ`, // mint
		`"Authorization":["Bearer opaque-tokengate-gateway`, // fetch
		`"Authorization":["Bearer opaque-partner-app`,       // exchange
		`"Authorization":["Bearer eyJ`,                      // passthrough
		`"X-Subject":["demo-client"]`,                       // remove (and no Authorization)
		`"path":"/public/x"`,                                // public
		"401 Unauthorized",                                  // no token
		`error="invalid_token"`,                             // bad token
		`error="insufficient_scope"`,                        // missing scope
		`"Authorization":["Bearer eyJ`,                      // opaque: phantom token
		"200 OK",                                            // forward-auth
		`"Authorization":["Bearer exchanged-demo-user-for-echo-upstream-`,     // token_exchange
		`"issued_token_type":"urn:ietf:params:oauth:token-type:access_token"`, // tokengate as STS
		`"act":{"sub":"` + testenv.ServiceClientID + `"}`,                     // its token introspected
	}
	for i, w := range want {
		if i < len(parts) && !strings.Contains(parts[i], w) {
			t.Errorf("command %d output lacks %q:\n%s", i, w, parts[i])
		}
	}
	if strings.Contains(parts[5], "Authorization") {
		t.Errorf("remove route: the upstream still saw an Authorization header:\n%s", parts[5])
	}
}
