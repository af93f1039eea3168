// Command chrootescape tries the classic escape from a chroot (chroot into
// a subdirectory while keeping a descriptor of the old root, then climb
// with "..") and says where it ended: "contained" when the marker file it
// made in its root before is still there, "escaped: ..." otherwise. A
// container whose root is a pivot_root of its own mount namespace (runc's)
// stays contained; one that is only chrooted does not. Needs CAP_SYS_CHROOT.
package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

func main() {
	const marker = "/chrootescape-marker"
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		fail("writing the marker: %v", err)
	}
	if err := os.MkdirAll("/tmp/chrootescape", 0o700); err != nil {
		fail("mkdir: %v", err)
	}
	old, err := syscall.Open("/", syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		fail("opening /: %v", err)
	}
	if err := syscall.Chroot("/tmp/chrootescape"); err != nil {
		fail("chroot: %v", err)
	}
	if err := syscall.Fchdir(old); err != nil {
		fail("fchdir: %v", err)
	}
	for i := 0; i < 64; i++ {
		if err := syscall.Chdir(".."); err != nil {
			fail("chdir ..: %v", err)
		}
	}
	if err := syscall.Chroot("."); err != nil {
		fail("chroot .: %v", err)
	}
	if _, err := os.Stat(marker); err == nil {
		fmt.Println("contained")
		return
	}
	var names []string
	if entries, err := os.ReadDir("/"); err == nil {
		for _, e := range entries {
			names = append(names, e.Name())
		}
	}
	fmt.Printf("escaped: / holds %s\n", strings.Join(names, " "))
}

func fail(format string, a ...any) {
	fmt.Printf("error: "+format+"\n", a...)
	os.Exit(1)
}
