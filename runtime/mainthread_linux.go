package runtime

import goruntime "runtime"

// The main goroutine keeps the main thread, and no other goroutine runs on
// it. The monitor needs that: MonitorMain moves the main thread into the
// container's view and the main goroutine must be the one there. And code
// here that joins a namespace (virtiofsd's mount namespace in
// servedns_linux.go; the network package's netns changes) does it on a
// locked thread and returns with the thread still locked, so that Go ends
// the thread with the goroutine. Go cannot end the main thread: it parks
// it, still in the namespace it joined. /proc/self shows the main
// thread's namespaces, mount table and root, so a goroutine that happened
// to run there made this process look like it lived in virtiofsd's mount
// namespace: virtiofsdOnce then found the pod's virtiofsd "in this
// process's mount namespace" and failed the pod's next bind (critest's
// "no virtiofsd serving", once in a few runs). runc locks its main thread
// in init for the same kind of reason.
func init() { goruntime.LockOSThread() }
