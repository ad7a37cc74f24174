package envoy

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDockerfile checks the top-level Dockerfile the compose files build: a static binary built
// in a Go stage, a distroless (or scratch) final stage running as a numeric non-root user, and the
// entry point and default configuration path the compose files and manifests rely on. There is no
// Docker engine here to build it; this is a structural check.
func TestDockerfile(t *testing.T) {
	df := stripComments(string(readFile(t, "../Dockerfile")))
	lines := strings.Split(regexp.MustCompile(`\\\n\s*`).ReplaceAllString(df, " "), "\n")

	var froms []string
	for _, l := range lines {
		if f, ok := strings.CutPrefix(strings.TrimSpace(l), "FROM "); ok {
			froms = append(froms, f)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, got FROM %v", froms)
	}
	if goVersion := goModVersion(t); !strings.HasPrefix(froms[0], "golang:"+goVersion+" ") {
		t.Errorf("build stage %q: want golang:%s (go.mod's Go, a release tag)", froms[0], goVersion)
	}
	final := froms[len(froms)-1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") && final != "scratch" {
		t.Errorf("final stage %q: want distroless static or scratch", final)
	}

	build := ""
	for _, l := range lines {
		if strings.Contains(l, "go build") {
			build = l
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w`, "./cmd/tokengate"} {
		if !strings.Contains(build, want) {
			t.Errorf("go build line lacks %s: %q", want, build)
		}
	}

	user := regexp.MustCompile(`(?m)^USER (\d+)(:\d+)?\s*$`).FindStringSubmatch(df)
	if user == nil || user[1] == "0" {
		t.Error("the final stage must set a numeric non-root USER (Kubernetes runAsNonRoot checks it)")
	}
	if !strings.Contains(df, `ENTRYPOINT ["/tokengate"]`) {
		t.Error(`want ENTRYPOINT ["/tokengate"]`)
	}
	if !strings.Contains(df, `CMD ["serve", "--config", "/etc/tokengate/tokengate.yaml"]`) {
		t.Error(`want CMD ["serve", "--config", "/etc/tokengate/tokengate.yaml"]`)
	}
	if got := configArg(t, "docker-compose.yaml", "tokengate", "--config"); got != "/etc/tokengate/tokengate.yaml" {
		t.Errorf("compose runs tokengate with --config %s, the image's default is /etc/tokengate/tokengate.yaml", got)
	}

	// .dockerignore keeps VCS data out and never the sources the build needs.
	var ignored []string
	for _, l := range strings.Split(string(readFile(t, "../.dockerignore")), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			ignored = append(ignored, l)
		}
	}
	if !slices.Contains(ignored, ".git") {
		t.Error(".dockerignore must exclude .git")
	}
	// The compose rigs read their secrets from envoy/.env: never into a build context.
	if !slices.Contains(ignored, "**/.env") {
		t.Error(".dockerignore must exclude **/.env (the compose rigs' secrets)")
	}
	for _, needed := range []string{"go.mod", "go.sum", "cmd", "internal", "*.go", "**/*.go", "extauthz", "issuer"} {
		if slices.Contains(ignored, needed) || slices.Contains(ignored, needed+"/") {
			t.Errorf(".dockerignore excludes %s, which the build needs", needed)
		}
	}
}

// goModVersion returns the go directive of ../go.mod.
func goModVersion(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(string(readFile(t, "../go.mod")))
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return m[1]
}
