package initrd

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// signed appends a signature of sigLen bytes to body as sign-file does,
// with info's fields (id_type at [2]) as given.
func signed(body []byte, sigLen int, info [moduleSigInfoLen]byte) []byte {
	binary.BigEndian.PutUint32(info[8:], uint32(sigLen))
	out := append(bytes.Clone(body), bytes.Repeat([]byte{0x30}, sigLen)...)
	out = append(out, info[:]...)
	return append(out, moduleSigMagic...)
}

func TestStripSignature(t *testing.T) {
	body := []byte("\x7fELF a module's bytes")
	pkcs7 := [moduleSigInfoLen]byte{2: 2}
	tests := []struct {
		name    string
		in      []byte
		want    []byte
		wantErr bool
	}{
		{"unsigned", body, body, false},
		{"signed", signed(body, 470, pkcs7), body, false},
		{"empty", nil, nil, false},
		{"marker only", []byte(moduleSigMagic), nil, true},
		{"not PKCS#7", signed(body, 470, [moduleSigInfoLen]byte{2: 1}), nil, true},
		{"signer named", signed(body, 470, [moduleSigInfoLen]byte{2: 2, 3: 4}), nil, true},
		{"signature longer than the file", signed(body, 470, pkcs7)[470:], nil, true},
		{"no signature bytes", signed(body, 0, pkcs7), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := StripSignature(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && !bytes.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestModulesMustBeSigned(t *testing.T) {
	tests := []struct {
		name   string
		config *string // nil: no config file
		want   bool
	}{
		{"forced", ptr("CONFIG_MODULE_SIG=y\nCONFIG_MODULE_SIG_FORCE=y\n"), true},
		{"not forced", ptr("CONFIG_MODULE_SIG=y\n# CONFIG_MODULE_SIG_FORCE is not set\n"), false},
		{"unsigned kernel", ptr("# CONFIG_MODULE_SIG is not set\n"), false},
		{"no config", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			k := &Kernel{Release: "6.1.0-9-amd64", Vmlinuz: filepath.Join(dir, "vmlinuz-6.1.0-9-amd64")}
			if tt.config != nil {
				if err := os.WriteFile(filepath.Join(dir, "config-6.1.0-9-amd64"), []byte(*tt.config), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := k.ModulesMustBeSigned(); got != tt.want {
				t.Errorf("ModulesMustBeSigned() = %v, want %v", got, tt.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }
