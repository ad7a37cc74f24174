package envoy

import (
	"os"
	"testing"

	"github.com/tokengate/tokengate/internal/config"
)

func TestZZCfg(t *testing.T) {
	env := func(k string) (string, bool) { return "x-" + k, true }
	for _, f := range []string{"tokengate.yaml", "idp.yaml", "tokengate-replicas.yaml"} {
		_, err := config.Load(f, env)
		t.Logf("%s: %v", f, err)
	}
	_ = os.Getenv
}
