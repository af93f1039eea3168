package vmm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// VirtiofsdCandidates are where FindVirtiofsd looks, in order: the Rust
// virtiofsd (Debian ≥ 13's virtiofsd package, most distributions), then
// the C one Debian 12's qemu ships, then PATH.
var VirtiofsdCandidates = []string{"/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd", "virtiofsd"}

// FindVirtiofsd returns explicit if it is set (and exists), else the first
// of VirtiofsdCandidates that exists; ErrNoVirtiofsd if none does.
func FindVirtiofsd(explicit string) (string, error) {
	cands := VirtiofsdCandidates
	if explicit != "" {
		cands = []string{explicit}
	}
	for _, c := range cands {
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w (looked for %s): install virtiofsd or use a %q share", ErrNoVirtiofsd, strings.Join(cands, ", "), Share9p)
}

// VirtiofsdFlavor is the command-line dialect of a virtiofsd binary.
type VirtiofsdFlavor int

const (
	// VirtiofsdC is qemu's C virtiofsd (qemu ≤ 7.2): -o source=DIR.
	VirtiofsdC VirtiofsdFlavor = iota
	// VirtiofsdRust is gitlab.com/virtio-fs/virtiofsd: --shared-dir=DIR.
	VirtiofsdRust
)

// VirtiofsdFlavorOf tells the dialect from a binary's --help output.
func VirtiofsdFlavorOf(help []byte) (VirtiofsdFlavor, error) {
	switch {
	case bytes.Contains(help, []byte("--shared-dir")):
		return VirtiofsdRust, nil
	case bytes.Contains(help, []byte("source=")):
		return VirtiofsdC, nil
	}
	return 0, fmt.Errorf("virtiofsd --help names neither --shared-dir nor -o source=")
}

// VirtiofsdArgs are the arguments for serving sh on the listening socket
// that is virtiofsd's descriptor fd (both dialects take --fd): its cache
// policy (CacheNone when unset: the guest sees host changes at once) and
// extended attributes when it asks for them.
func VirtiofsdArgs(f VirtiofsdFlavor, fd int, sh Share) []string {
	sock := "--fd=" + strconv.Itoa(fd)
	cache := sh.Cache
	if cache == "" {
		cache = CacheNone
	}
	if f == VirtiofsdRust {
		if cache == CacheNone {
			cache = "never"
		}
		a := []string{sock, "--shared-dir=" + sh.Dir, "--cache=" + cache}
		if sh.Xattr {
			a = append(a, "--xattr")
		}
		return a
	}
	// The C virtiofsd parses -o with libfuse's fuse_opt, where ',' splits
	// options and '\' escapes the next character.
	esc := strings.NewReplacer(`\`, `\\`, `,`, `\,`).Replace(sh.Dir)
	a := []string{sock, "-o", "source=" + esc, "-o", "cache=" + cache}
	if sh.Xattr {
		a = append(a, "-o", "xattr")
	}
	return a
}

// VirtiofsdFlavorOfBinary tells bin's dialect from its --help. With
// cacheDir set, a stamp file there named by bin's stat (path, device,
// inode, size, mtime, ctime) keeps the answer, so a start does not run
// --help again (about 20 ms) until the binary changes; a stamp that
// cannot be read or written only costs the probe.
func VirtiofsdFlavorOfBinary(ctx context.Context, bin, cacheDir string) (VirtiofsdFlavor, error) {
	stamp := ""
	if cacheDir != "" {
		if fi, err := os.Stat(bin); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				sum := sha256.Sum256(fmt.Appendf(nil, "virtiofsd flavor v1\x00%s\x00%d %d %d %d.%d %d.%d", bin,
					st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec))
				stamp = filepath.Join(cacheDir, "virtiofsd-flavor-"+hex.EncodeToString(sum[:16]))
			}
		}
		if b, err := os.ReadFile(stamp); err == nil {
			switch string(b) {
			case "c":
				return VirtiofsdC, nil
			case "rust":
				return VirtiofsdRust, nil
			}
		}
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	help, herr := exec.CommandContext(hctx, bin, "--help").CombinedOutput()
	flavor, err := VirtiofsdFlavorOf(help)
	if err != nil {
		return 0, fmt.Errorf("running %s --help (%v): %w", bin, herr, err)
	}
	if stamp != "" {
		name := map[VirtiofsdFlavor]string{VirtiofsdC: "c", VirtiofsdRust: "rust"}[flavor]
		if tmp, err := os.CreateTemp(cacheDir, ".virtiofsd-flavor-*"); err == nil {
			_, werr := tmp.WriteString(name)
			if cerr := tmp.Close(); werr == nil && cerr == nil {
				werr = os.Rename(tmp.Name(), stamp)
			}
			if werr != nil {
				_ = os.Remove(tmp.Name())
			}
		}
	}
	return flavor, nil
}

// StartVirtiofsd starts virtiofsd (of dialect flavor) for sh, listening on
// socket. The socket is made here and handed to virtiofsd (--fd), so that
// the VMM can start at once, its connection waiting in the socket's backlog
// until virtiofsd accepts it, instead of after virtiofsd has made the socket
// itself (what a start waited for: 10-20 ms per share). A share that is not
// a directory is refused here, as virtiofsd would, but before the VMM
// starts; virtiofsd failing otherwise ends the VMM's connection, and the
// VMM with it (Supervisor.Start says why). On failure nothing is left.
func StartVirtiofsd(bin string, flavor VirtiofsdFlavor, socket string, sh Share, logPath string) (_ *Process, err error) {
	if fi, err := os.Stat(sh.Dir); err != nil {
		return nil, fmt.Errorf("share %q: %w", sh.Tag, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("share %q: %q is not a directory", sh.Tag, sh.Dir)
	}
	if err := ClaimSocket(socket); err != nil {
		return nil, err
	}
	ln, err := ListenSocket(socket)
	if err != nil {
		return nil, err
	}
	defer ln.Close() // virtiofsd has its own
	const fd = 3     // the first of StartProcessIn's extra descriptors
	p, err := StartProcessIn("", "virtiofsd", bin, VirtiofsdArgs(flavor, fd, sh), logPath, []*os.File{ln})
	if err != nil {
		_ = RemoveSockets(socket)
		return nil, err
	}
	return p, nil
}
