package initrd

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The initrd's modules go in without their signatures when the kernel
// does not insist on them (ModulesMustBeSigned): the guest's kernel then
// skips a SHA-256 of each module and the check of its PKCS#7 signature,
// code TCG runs slowly and translates afresh at each boot (the six modules
// of a container's boot took 175-183 ms signed, 129-136 ms unsigned, 6 cold
// boots each). Nothing is lost by it: the modules come from the same
// kernel package as the kernel image the host boots, which nothing checks
// either. The kernel says once that an unsigned module taints it ("E").
// Modules the guest loads later from the kernel's modules share keep their
// signatures.

// moduleSigMagic ends a signed module: the kernel's MODULE_SIG_STRING.
const moduleSigMagic = "~Module signature appended~\n"

// moduleSigInfoLen is the size of the kernel's struct module_signature,
// which sits between the signature and moduleSigMagic: algo, hash,
// id_type, signer_len, key_id_len, 3 bytes of padding, and sig_len (big
// endian).
const moduleSigInfoLen = 12

// StripSignature returns module without its appended signature (the
// module itself, unchanged, when it has none). A signature whose trailer
// does not describe a PKCS#7 signature within the file is an error, as the
// kernel's mod_check_sig would say.
func StripSignature(module []byte) ([]byte, error) {
	if !bytes.HasSuffix(module, []byte(moduleSigMagic)) {
		return module, nil
	}
	end := len(module) - len(moduleSigMagic)
	if end < moduleSigInfoLen {
		return nil, fmt.Errorf("module signature: %d bytes before the marker, want at least %d", end, moduleSigInfoLen)
	}
	info := module[end-moduleSigInfoLen : end]
	// algo, hash, signer_len, key_id_len and the padding are zero for
	// PKCS#7 (id_type 2), the only kind the kernel accepts.
	const pkcs7 = 2
	if info[2] != pkcs7 || info[0] != 0 || info[1] != 0 || info[3] != 0 || info[4] != 0 || info[5] != 0 || info[6] != 0 || info[7] != 0 {
		return nil, fmt.Errorf("module signature: trailer % x is not a PKCS#7 signature's", info)
	}
	sigLen := int(binary.BigEndian.Uint32(info[8:]))
	body := end - moduleSigInfoLen
	if sigLen <= 0 || sigLen >= body {
		return nil, fmt.Errorf("module signature: %d bytes of signature in a file of %d", sigLen, len(module))
	}
	return module[:body-sigLen], nil
}

// ModulesMustBeSigned reports whether the kernel loads only signed modules
// as far as its build config says (boot/config-<release> beside its image):
// CONFIG_MODULE_SIG_FORCE=y. A kernel whose config is not there is taken
// to need them (the initrd keeps the signatures).
func (k *Kernel) ModulesMustBeSigned() bool {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(k.Vmlinuz), "config-"+k.Release))
	if err != nil {
		return true
	}
	return configForcesSignatures(string(b))
}

// configForcesSignatures reads a kernel build config: whether it sets
// CONFIG_MODULE_SIG_FORCE.
func configForcesSignatures(config string) bool {
	for _, line := range strings.Split(config, "\n") {
		if strings.TrimSpace(line) == "CONFIG_MODULE_SIG_FORCE=y" {
			return true
		}
	}
	return false
}
