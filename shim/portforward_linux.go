package shim

import "github.com/initos-runtime/initos-runtime/network"

// listenPorts opens a pod's portListener in its network namespace: an
// nftables redirect of every TCP connection to 127.0.0.1 there to one
// socket of the shim's (network.LoopbackListener).
func listenPorts(nsPath string) (portListener, error) {
	l, err := network.ListenLoopback(nsPath)
	if err != nil {
		return nil, err
	}
	return l, nil
}
