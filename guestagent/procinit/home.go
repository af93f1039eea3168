package procinit

import (
	"bytes"
	"strconv"
	"strings"
)

// withHome returns env with HOME set, as runc's init does when the spec
// leaves it out: the home directory of uid in passwd() (the container's
// /etc/passwd, read only then), else "/". An env that has HOME is
// returned as it is.
func withHome(env []string, uid uint32, passwd func() []byte) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "HOME=") {
			return env
		}
	}
	home := "/"
	for _, line := range bytes.Split(passwd(), []byte("\n")) {
		// name:password:UID:GID:GECOS:directory:shell
		f := strings.Split(string(line), ":")
		if len(f) < 7 || f[5] == "" {
			continue
		}
		if id, err := strconv.ParseUint(f[2], 10, 32); err == nil && uint32(id) == uid {
			home = f[5]
			break
		}
	}
	return append(env[:len(env):len(env)], "HOME="+home)
}
