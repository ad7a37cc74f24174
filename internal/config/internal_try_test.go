package config
import ("testing";"os";"fmt")
func TestTry(t *testing.T){
  env := map[string]string{"PARTNER_ID":"partner-id","TEST_SIGNING_KEY_FILE":"/tmp/k.pem"}
  os.WriteFile("/tmp/k.pem", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0600)
  cfg, err := Load(os.Getenv("F"), func(k string)(string,bool){v,ok:=env[k];return v,ok})
  fmt.Printf("%v\n%+v\n", err, cfg)
}
