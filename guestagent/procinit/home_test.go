package procinit

import (
	"reflect"
	"testing"
)

func TestWithHome(t *testing.T) {
	passwd := []byte("root:x:0:0:root:/root:/bin/sh\n# comment\nbroken:line\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n" +
		"www:x:33:33:www:/var/www:/bin/false\nnohome:x:44:44:::/bin/sh\n")
	tests := []struct {
		name string
		env  []string
		uid  uint32
		want []string
	}{
		{"root", []string{"PATH=/bin"}, 0, []string{"PATH=/bin", "HOME=/root"}},
		{"a user of the image", nil, 33, []string{"HOME=/var/www"}},
		{"a uid without an entry", []string{"A=1"}, 100, []string{"A=1", "HOME=/"}},
		{"an entry without a home", nil, 44, []string{"HOME=/"}},
		{"HOME in the spec wins", []string{"HOME=/h"}, 0, []string{"HOME=/h"}},
		{"an empty HOME is the spec's too", []string{"HOME="}, 0, []string{"HOME="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			read := false
			got := withHome(tt.env, tt.uid, func() []byte { read = true; return passwd })
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("withHome = %q, want %q", got, tt.want)
			}
			if read != (len(tt.env) == len(got)-1) {
				t.Errorf("passwd read: %v, though HOME was set: %v", read, len(tt.env) == len(got))
			}
		})
	}
	if got := withHome(nil, 0, func() []byte { return nil }); !reflect.DeepEqual(got, []string{"HOME=/"}) {
		t.Errorf("no passwd: %q", got)
	}
}
