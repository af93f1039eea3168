package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go/features"
	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

func TestFeaturesCommand(t *testing.T) {
	want := runtime.Features()
	want.Annotations[versionAnnotation] = version
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "prints", args: []string{"features"}},
		{name: "argument", args: []string{"features", "x"}, wantErr: "features: expected no arguments, got 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runTestApp(t, []*cli.Command{featuresCommand()}, tc.args...)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got features.Features
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out)
			}
			if !reflect.DeepEqual(&got, want) {
				t.Errorf("printed %+v, want %+v", got, want)
			}
			// runc's layout: four-space indent, final newline.
			if !strings.HasPrefix(out, "{\n    \"ociVersionMin\": \"1.0.0\",\n") || !strings.HasSuffix(out, "}\n") {
				t.Errorf("layout differs from runc features: %.60q", out)
			}
		})
	}
}
