package integration

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestGuestRAMHugePages: a booted VM with a virtiofs root has its RAM in a
// file on the runtime's huge-page tmpfs (config ramDir), mapped by qemu
// with huge pages (ShmemPmdMapped in its smaps), and the file is gone
// from the directory (qemu unlinks it at once): nothing is left there
// when the VM ends.
func TestGuestRAMHugePages(t *testing.T) {
	needVMs(t)
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"); err != nil {
		t.Skipf("this host's kernel has no transparent huge pages: %v", err)
	}
	if _, err := os.Stat("/usr/lib/qemu/virtiofsd"); err != nil {
		t.Skipf("no virtiofsd (qemu-system-common): the root goes over 9p, in anonymous memory: %v", err)
	}
	t.Parallel()
	id := "ram-huge-pages"
	dir := writeBundle(t, busyboxSpec(t, "sleep", "3600"))
	defer assertNothingLeft(t, id)
	defer runtimeCmd(t, nil, "delete", "--force", id)
	createContainer(t, dir, id)
	pid := vmmPid(t, id)
	mapped, pmd := ramMapping(t, pid, env.cfg.RAMDir)
	if mapped == "" {
		t.Fatalf("qemu (pid %d) maps no file of %s", pid, env.cfg.RAMDir)
	}
	if !strings.HasSuffix(mapped, "(deleted)") {
		t.Errorf("qemu's RAM file %q is still in %s", mapped, env.cfg.RAMDir)
	}
	if pmd <= 0 {
		t.Errorf("qemu's RAM %q has no huge pages mapped (ShmemPmdMapped %d kB)", mapped, pmd)
	}
	if ents, err := os.ReadDir(env.cfg.RAMDir); err != nil || len(ents) != 0 {
		t.Errorf("%s holds %v (%v), want nothing", env.cfg.RAMDir, ents, err)
	}
}

// vmmPid is the pid of the qemu of container id (its console log, in its
// state dir, is on qemu's command line).
func vmmPid(t *testing.T, id string) int {
	t.Helper()
	stateDir := filepath.Join(env.cfg.Root, id) + "/"
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "qemu-system") || !strings.Contains(string(b), stateDir) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err == nil {
			return pid
		}
	}
	t.Fatalf("no qemu with %s on its command line", stateDir)
	return 0
}

// ramMapping finds pid's mapping of a file under dir: its path as smaps
// shows it, and its ShmemPmdMapped in kB.
func ramMapping(t *testing.T, pid int, dir string) (path string, pmdKB int64) {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			// A mapping's first line: address perms offset dev inode [path].
			in = len(fields) >= 6 && strings.HasPrefix(fields[5], dir+"/")
			if in {
				path = strings.Join(fields[5:], " ")
			}
		case in && len(fields) >= 2 && fields[0] == "ShmemPmdMapped:":
			pmdKB, _ = strconv.ParseInt(fields[1], 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return path, pmdKB
}
