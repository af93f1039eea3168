// Command mkdir32 is built for i386 (GOARCH=386) and run in a container on
// an x86_64 host, whose seccomp filter must then apply the profile's rules
// to i386's system calls: it makes a directory and prints what mkdir
// answered, then its architecture.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	dir := "/tmp/mkdir32-probe"
	if err := os.Mkdir(dir, 0o755); err != nil {
		fmt.Printf("mkdir: %v\n", err.(*os.PathError).Err)
	} else {
		fmt.Println("mkdir: ok")
		os.Remove(dir)
	}
	fmt.Println(runtime.GOARCH)
}
