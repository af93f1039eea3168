// Package initrd turns an extracted Debian kernel package and the guest agent
// into the two boot artefacts of a microVM: the ELF vmlinux and the initrd.
//
// The kernel side works on a directory where a linux-image deb was unpacked
// with dpkg-deb -x (FindKernel). ExtractVmlinux pulls the ELF vmlinux out of
// the compressed bzImage: booting it through its PVH entry saves the 7-8 s
// that decompressing the XZ payload costs under TCG. Debian's payload is XZ
// with the x86 BCJ filter, which github.com/ulikunitz/xz does not support:
// the xz container and the BCJ filter are decoded here, the LZMA2 data by
// that module's lzma package. gzip, zstd (github.com/klauspost/compress/zstd)
// and LZ4 legacy (blocks by github.com/pierrec/lz4/v4) payloads work too, all
// in-process. Vmlinux caches the extraction by the content of the vmlinuz,
// found again by a stat stamp of it.
//
// Debian's package carries no modules.dep, so the module closure is computed
// here from each .ko's .modinfo section (NewIndex, Resolve, ResolveGroups):
// depends= gives the hard dependencies, softdep= pre: entries are loaded
// first and post: entries after the module when the tree has them; softdep
// names may be aliases (btrfs wants "crypto-crc32c", which crc32c_generic
// provides), and modules.builtin / modules.builtin.modinfo satisfy names that
// are compiled into the kernel.
//
// Build writes the initrd of docs/contracts.md as an uncompressed, deterministic
// newc cpio archive: /init is the agent, /lib/modules/<name>.ko the modules
// (without their signatures when the kernel allows it: StripSignature) and
// /lib/modules/load.order the order the agent loads them in, each line naming
// the module groups that need it. It also holds /lib/modules/modules.idx.gz,
// the ModIndex of the kernel's whole module tree (every module's path,
// dependencies and aliases, and the built-in modules; cached per kernel under
// a stat stamp of its modules directory), and /sbin/initos-modprobe, a
// symlink to /init: the guest kernel's modprobe, which resolves a request
// with ModIndex.Request (modprobe's rules: name, then fnmatch over the
// aliases, then built in) and loads the files from a share of the modules
// directory. The archive is cached under a key derived
// from its contents, so the same agent and modules give the same file and the
// same bytes. Making a new vmlinux or initrd prunes the cache of what no start
// has used for a month (cache.go).
package initrd
