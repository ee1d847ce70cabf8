package config

import (
	"bufio"
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestEnvExampleMatchesConfig keeps .env.example true to the code: every
// setting is listed once, with its real default, and nothing else is.
func TestEnvExampleMatchesConfig(t *testing.T) {
	f, err := os.Open("../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	listed := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf(".env.example: line %q is not KEY=VALUE", line)
		}
		if _, dup := listed[k]; dup {
			t.Errorf(".env.example lists %s twice", k)
		}
		listed[k] = v
	}
	typ := reflect.TypeOf(Config{})
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := f.Tag.Get("env")
		got, ok := listed[name]
		if !ok {
			t.Errorf(".env.example does not list %s", name)
			continue
		}
		if want := f.Tag.Get("envDefault"); got != want {
			t.Errorf(".env.example: %s=%q, want the default %q", name, got, want)
		}
		delete(listed, name)
	}
	for k := range listed {
		t.Errorf(".env.example lists %s, which the service does not read", k)
	}
}
