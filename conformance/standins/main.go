// Command standins writes the stand-ins for the images that critest's specs
// run (docs/conformance.md lists them and how they differ) as one OCI image
// layout tar for `ctr images import`: every one is Debian's static busybox
// (the rootfs of scripts/busybox-bundle.sh) and, where needed, a layer of
// its own.
//
//	standins -rootfs DIR -nnp BIN -out FILE
package main

import (
	"flag"
	"fmt"
	"io/fs"
	"os"

	"github.com/initos-runtime/initos-runtime/internal/ociarchive"
)

// The names critest asks for (cri-tools v1.37.0, pkg/framework and
// pkg/validate), and CRI's sandbox image (containerd's pinned_images).
const (
	busyboxImage   = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	nginxImage     = "registry.k8s.io/e2e-test-images/nginx:1.14-2"
	httpdImage     = "registry.k8s.io/e2e-test-images/httpd:2.4.39-4"
	nonewprivs     = "registry.k8s.io/e2e-test-images/nonewprivs:1.3"
	hostnetNginx   = "gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest"
	predefinedUser = "gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest"
	pauseImage     = "localhost/initos-pause:latest"
)

// nginxScript stands in for nginx: this shell stays the "nginx" process
// (its command name is the script's), writes its pid where nginx's master
// does, and serves /usr/share/nginx/html with busybox's httpd.
const nginxScript = `#!/bin/sh
echo $$ > /var/run/nginx.pid
httpd -f -p "${NGINX_PORT:-80}" -h /usr/share/nginx/html &
trap 'kill $! 2>/dev/null; exit 0' TERM INT QUIT
wait
`

// httpdScript stands in for Apache's httpd-foreground: it says "httpd" on
// its output and serves /usr/local/apache2/htdocs on port 80.
const httpdScript = `#!/bin/sh
echo "httpd (stand-in: busybox httpd) serving /usr/local/apache2/htdocs on port 80"
exec httpd -f -v -p 80 -h /usr/local/apache2/htdocs
`

// The applets that the e2e busybox image has and Debian's busybox-static
// lacks: `pgrep NAME` (the pids whose command name is NAME) and `ipcs -m`
// (here the kernel's list of segments).
const (
	pgrepScript = `#!/bin/sh
rc=1
for d in /proc/[0-9]*; do
	read -r c 2>/dev/null <"$d/comm" && [ "$c" = "$1" ] && echo "${d#/proc/}" && rc=0
done
exit $rc
`
	ipcsScript = "#!/bin/sh\ncat /proc/sysvipc/shm\n"
)

// The users and groups of the e2e busybox image (RunAsUserName runs as
// nobody).
const (
	passwd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`
	group = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
mail:x:12:
www-data:x:33:
operator:x:37:
users:x:100:
nogroup:x:65534:
`
)

func main() {
	rootfs := flag.String("rootfs", "", "busybox root filesystem (scripts/busybox-bundle.sh DIR: DIR/rootfs)")
	nnp := flag.String("nnp", "", "the static conformance/nnp binary")
	out := flag.String("out", "", "the OCI image layout tar to write")
	flag.Parse()
	if *rootfs == "" || *nnp == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := write(*rootfs, *nnp, *out); err != nil {
		fmt.Fprintln(os.Stderr, "standins:", err)
		os.Exit(1)
	}
}

func write(rootfs, nnpPath, out string) error {
	base, err := ociarchive.DirLayer(rootfs)
	if err != nil {
		return err
	}
	nnp, err := os.ReadFile(nnpPath)
	if err != nil {
		return err
	}
	dir := func(name string) ociarchive.File { return ociarchive.File{Name: name, Mode: fs.ModeDir | 0o755} }
	exe := func(name, data string) ociarchive.File {
		return ociarchive.File{Name: name, Mode: 0o755, Data: []byte(data)}
	}
	layers := map[string][]ociarchive.File{
		"busybox": {dir("usr"), dir("usr/bin"), exe("usr/bin/pgrep", pgrepScript), exe("usr/bin/ipcs", ipcsScript),
			dir("etc"), {Name: "etc/passwd", Mode: 0o644, Data: []byte(passwd)}, {Name: "etc/group", Mode: 0o644, Data: []byte(group)}},
		"httpd": {dir("usr"), dir("usr/local"), dir("usr/local/bin"), exe("usr/local/bin/httpd-foreground", httpdScript),
			dir("usr/local/apache2"), dir("usr/local/apache2/htdocs"),
			{Name: "usr/local/apache2/htdocs/index.html", Mode: 0o644, Data: []byte("<html><body><h1>It works! (stand-in)</h1></body></html>\n")}},
		"nginx": {dir("usr"), dir("usr/sbin"), exe("usr/sbin/nginx", nginxScript), dir("usr/share"), dir("usr/share/nginx"),
			dir("usr/share/nginx/html"), {Name: "usr/share/nginx/html/index.html", Mode: 0o644, Data: []byte("<h1>Welcome to nginx (stand-in)</h1>\n")},
			dir("var"), dir("var/run")},
		"nonewprivs": {dir("usr"), dir("usr/local"), dir("usr/local/bin"), {Name: "usr/local/bin/nnp", Mode: fs.ModeSetuid | 0o755, Data: nnp}},
		"group": {dir("etc"),
			{Name: "etc/passwd", Mode: 0o644, Data: []byte(passwd + "default-user:x:1000:1000::/home/default-user:/bin/sh\n")},
			{Name: "etc/group", Mode: 0o644, Data: []byte(group + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n")},
			dir("home"), dir("home/default-user")},
	}
	tars := map[string][]byte{}
	for name, files := range layers {
		if tars[name], err = ociarchive.FileLayer(files); err != nil {
			return err
		}
	}
	nginxCmd := []string{"/usr/sbin/nginx", "-g", "daemon off; master process"}
	return ociarchive.Write(out, []ociarchive.Image{
		{Name: busyboxImage, Layers: [][]byte{base, tars["busybox"]}, Cmd: []string{"sh"}},
		{Name: nginxImage, Layers: [][]byte{base, tars["busybox"], tars["nginx"]}, Cmd: nginxCmd},
		{Name: httpdImage, Layers: [][]byte{base, tars["busybox"], tars["httpd"]}, Cmd: []string{"httpd-foreground"}},
		{Name: hostnetNginx, Layers: [][]byte{base, tars["busybox"], tars["nginx"]}, Cmd: nginxCmd,
			Env: []string{ociarchive.DefaultPath, "NGINX_PORT=12003"}},
		{Name: nonewprivs, Layers: [][]byte{base, tars["nonewprivs"]}, Entrypoint: []string{"/usr/local/bin/nnp"}},
		{Name: predefinedUser, Layers: [][]byte{base, tars["busybox"], tars["group"]}, Cmd: []string{"sh"}, User: "1000"},
		// Its child runs as "busybox sleep" (command name busybox): with the
		// pod's shared PID namespace (CRI's default without
		// namespace_options, as crictl sends them) the containers see it,
		// and "pgrep sleep" (execSync with timeout) must find only theirs.
		{Name: pauseImage, Layers: [][]byte{base}, Entrypoint: []string{"/bin/sh", "-c", "trap 'exit 0' TERM INT; busybox sleep 2147483647 & wait"}},
	})
}
