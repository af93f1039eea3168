// Command nnp is the stand-in for the e2e test image nonewprivs: installed
// setuid root, it prints its effective user ID as that image's program does
// (critest's NoNewPrivs specs run it as uid 1000 with and without
// no_new_privs).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("Effective uid: %d\n", os.Geteuid())
}
