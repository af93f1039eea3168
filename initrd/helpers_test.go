package initrd

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kernelRootEnv names the environment variable with the directory where a
// Debian linux-image deb was extracted; tests on the real kernel skip
// without it.
const kernelRootEnv = "INITOS_KERNEL_ROOT"

func realKernel(tb testing.TB) *Kernel {
	tb.Helper()
	root := os.Getenv(kernelRootEnv)
	if root == "" {
		tb.Skipf("needs a real kernel: set %s to a dpkg-deb -x'd linux-image (e.g. /tmp/k/root)", kernelRootEnv)
	}
	k, err := FindKernel(root)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// fakeELF returns a minimal ELF64 relocatable object whose only section
// besides the section name table is .modinfo with the given key=value
// strings.
func fakeELF(modinfo ...string) []byte {
	var mi []byte
	for _, kv := range modinfo {
		mi = append(mi, kv...)
		mi = append(mi, 0)
	}
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	miOff := uint64(64)
	strOff := miOff + uint64(len(mi))
	shOff := (strOff + uint64(len(shstr)) + 7) &^ 7
	var b bytes.Buffer
	hdr := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: 1,
		Shoff: shOff, Ehsize: 64, Shentsize: 64, Shnum: 3, Shstrndx: 2,
	}
	copy(hdr.Ident[:], []byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), 1})
	binary.Write(&b, binary.LittleEndian, hdr)
	b.Write(mi)
	b.Write(shstr)
	b.Write(make([]byte, int(shOff)-b.Len()))
	secs := []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Off: miOff, Size: uint64(len(mi)), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: strOff, Size: uint64(len(shstr)), Addralign: 1},
	}
	binary.Write(&b, binary.LittleEndian, secs)
	return b.Bytes()
}

// fakeMod is a module of a fake tree: its path under kernel/ and modinfo.
type fakeMod struct {
	path    string // e.g. fs/btrfs/btrfs.ko; .ko.xz is compressed
	modinfo []string
}

// fakeModulesDir writes lib/modules/<release> with mods and the given
// modules.builtin lines under root and returns its path.
func fakeModulesDir(t *testing.T, root, release string, mods []fakeMod, builtin []string) string {
	t.Helper()
	dir := filepath.Join(root, "lib", "modules", release)
	for _, m := range mods {
		p := filepath.Join(dir, "kernel", m.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		data := fakeELF(m.modinfo...)
		if strings.HasSuffix(p, ".xz") {
			data = compressXZ(t, data)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var bl strings.Builder
	for _, b := range builtin {
		bl.WriteString(b + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte(bl.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeBuiltinModinfo writes the modules.builtin.modinfo of the tree dir:
// NUL-separated "module.key=value" strings.
func writeBuiltinModinfo(t *testing.T, dir, records string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin.modinfo"), []byte(records), 0o644); err != nil {
		t.Fatal(err)
	}
}

// debianLikeMods mirrors the dependencies of the group modules in Debian's
// 6.1 kernel, including the alias softdeps of btrfs and libcrc32c.
func debianLikeMods() []fakeMod {
	m := func(path, name, depends string, extra ...string) fakeMod {
		return fakeMod{path, append([]string{"name=" + name, "depends=" + depends, "license=GPL"}, extra...)}
	}
	return []fakeMod{
		m("drivers/virtio/virtio_ring.ko", "virtio_ring", ""),
		m("drivers/virtio/virtio.ko", "virtio", "virtio_ring"),
		m("drivers/virtio/virtio_mmio.ko", "virtio_mmio", "virtio,virtio_ring"),
		m("drivers/virtio/virtio_pci_modern_dev.ko", "virtio_pci_modern_dev", ""),
		m("drivers/virtio/virtio_pci_legacy_dev.ko", "virtio_pci_legacy_dev", ""),
		m("drivers/virtio/virtio_pci.ko", "virtio_pci", "virtio_ring,virtio_pci_modern_dev,virtio_pci_legacy_dev,virtio"),
		m("drivers/block/virtio_blk.ko", "virtio_blk", "virtio,virtio_ring", "alias=virtio:d00000002v*"),
		m("crypto/crc32c_generic.ko", "crc32c_generic", "", "alias=crypto-crc32c", "alias=crc32c"),
		m("arch/x86/crypto/crc32c-intel.ko", "crc32c_intel", "", "alias=crypto-crc32c", "alias=crc32c"),
		m("crypto/blake2b_generic.ko", "blake2b_generic", "", "alias=blake2b-256"),
		m("crypto/xxhash_generic.ko.xz", "xxhash_generic", "", "alias=xxhash64"),
		m("lib/libcrc32c.ko", "libcrc32c", "", "softdep=pre: crc32c"),
		m("lib/zstd/zstd_compress.ko", "zstd_compress", ""),
		m("lib/raid6/raid6_pq.ko", "raid6_pq", ""),
		m("crypto/xor.ko", "xor", ""),
		m("fs/btrfs/btrfs.ko", "btrfs", "zstd_compress,raid6_pq,xor,libcrc32c",
			"softdep=pre: blake2b-256", "softdep=pre: sha256", "softdep=pre: xxhash64", "softdep=pre: crypto-crc32c"),
		m("drivers/char/virtio_console.ko", "virtio_console", "virtio,virtio_ring"),
		m("net/core/failover.ko", "failover", ""),
		m("drivers/net/net_failover.ko", "net_failover", "failover"),
		m("drivers/net/virtio_net.ko", "virtio_net", "virtio_ring,virtio,net_failover"),
		m("fs/fuse/fuse.ko", "fuse", ""),
		m("fs/fuse/virtiofs.ko", "virtiofs", "fuse,virtio,virtio_ring"),
		m("fs/netfs/netfs.ko", "netfs", ""),
		m("fs/fscache/fscache.ko", "fscache", "netfs"),
		m("net/9p/9pnet.ko", "9pnet", ""),
		m("fs/9p/9p.ko", "9p", "9pnet,fscache,netfs"),
		m("net/9p/9pnet_virtio.ko", "9pnet_virtio", "virtio,9pnet,virtio_ring"),
		m("net/vmw_vsock/vsock.ko", "vsock", ""),
		m("net/vmw_vsock/vmw_vsock_virtio_transport_common.ko", "vmw_vsock_virtio_transport_common", "vsock"),
		m("net/vmw_vsock/vmw_vsock_virtio_transport.ko", "vmw_vsock_virtio_transport", "virtio,vmw_vsock_virtio_transport_common,virtio_ring,vsock"),
	}
}

// fakeKernel writes a kernel root with a vmlinuz and debianLikeMods.
func fakeKernel(t *testing.T) *Kernel {
	t.Helper()
	root := t.TempDir()
	const release = "6.1.0-99-amd64"
	dir := fakeModulesDir(t, root, release, debianLikeMods(), []string{"kernel/lib/crc32.ko", "kernel/crypto/sha256_generic.ko"})
	if err := os.MkdirAll(filepath.Join(root, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	vmlinuz := filepath.Join(root, "boot", "vmlinuz-"+release)
	if err := os.WriteFile(vmlinuz, []byte("not a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &Kernel{Release: release, Vmlinuz: vmlinuz, ModulesDir: dir}
}
