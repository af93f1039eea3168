package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// LoopbackListener is one listening TCP socket on 127.0.0.1 in a network
// namespace that takes every TCP connection to 127.0.0.1, whatever its
// port, made in that namespace: an nftables table of the namespace's own
// (LoopbackTable) redirects them to it in its nat output hook, and
// OriginalPort reads the port a connection was made to from conntrack
// (SO_ORIGINAL_DST). Close deletes the table and closes the socket.
//
// It is how the CRI's port forward, which dials 127.0.0.1:PORT in the
// pod's network namespace on the host, reaches a pod whose processes run
// in a VM attached to that namespace (shim/portforward.go). (A BPF
// sk_lookup program would do without conntrack, but it hands connections
// to a socket through a sockmap, which kernels without
// CONFIG_NET_SOCK_MSG, ours among them, refuse to hold a socket.)
type LoopbackListener struct {
	*net.TCPListener
	nsPath string
	table  bool // the table was added

	once sync.Once
	err  error
}

// LoopbackTable is the name of the nftables table (family ip) that
// ListenLoopback adds to the namespace.
const LoopbackTable = "initos-portforward"

// ListenLoopback opens the LoopbackListener of the network namespace at
// nsPath, replacing a table a previous listener left there. It needs
// CAP_NET_ADMIN there (root); on error nothing is left.
func ListenLoopback(nsPath string) (_ *LoopbackListener, retErr error) {
	l := &LoopbackListener{nsPath: nsPath}
	defer func() {
		if retErr != nil {
			_ = l.Close()
			retErr = fmt.Errorf("listening on the loopback of network namespace %q: %w", nsPath, retErr)
		}
	}()
	err := inNetns(nsPath, func() error {
		ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return fmt.Errorf("opening the socket: %w", err)
		}
		l.TCPListener = ln
		return nil
	})
	if err != nil {
		return nil, err
	}
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	l.table = true
	if err := l.nft(func(c *nftables.Conn) {
		t := loopbackTable()
		// Added and deleted first: a table left behind (a shim killed
		// before its Close) goes in the same transaction.
		c.AddTable(t)
		c.DelTable(t)
		c.AddTable(t)
		ch := c.AddChain(&nftables.Chain{
			Name: "output", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest,
		})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: redirectRule(port)})
	}); err != nil {
		return nil, fmt.Errorf("adding nftables table %s: %w", LoopbackTable, err)
	}
	return l, nil
}

func loopbackTable() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyIPv4, Name: LoopbackTable}
}

// redirectRule is `oifname "lo" ip daddr 127.0.0.1 meta l4proto tcp
// redirect to :port`.
func redirectRule(port uint16) []expr.Any {
	lo := make([]byte, unix.IFNAMSIZ)
	copy(lo, "lo")
	p := make([]byte, 2)
	binary.BigEndian.PutUint16(p, port)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: lo},
		// The IPv4 header's destination address.
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{127, 0, 0, 1}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Immediate{Register: 1, Data: p},
		&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
	}
}

// nft runs one nftables transaction in the namespace.
func (l *LoopbackListener) nft(f func(c *nftables.Conn)) error {
	ns, err := os.Open(l.nsPath)
	if err != nil {
		return fmt.Errorf("opening the namespace: %w", err)
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Fd())))
	if err != nil {
		return fmt.Errorf("opening a netlink connection: %w", err)
	}
	f(c)
	return c.Flush()
}

// OriginalPort is the port the connection c, accepted by l, was made to
// (SO_ORIGINAL_DST: the destination before the redirect).
func (l *LoopbackListener) OriginalPort(c net.Conn) (int, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0, fmt.Errorf("reading the original destination: %T is not a TCP connection", c)
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("reading the original destination: %w", err)
	}
	var port int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		// struct sockaddr_in fits IPv6Mreq's 20 bytes: family (2), port
		// (2, big-endian), address (4).
		var m *unix.IPv6Mreq
		if m, gerr = unix.GetsockoptIPv6Mreq(int(fd), unix.IPPROTO_IP, unix.SO_ORIGINAL_DST); gerr == nil {
			port = int(binary.BigEndian.Uint16(m.Multiaddr[2:4]))
		}
	}); err != nil {
		return 0, fmt.Errorf("reading the original destination: %w", err)
	}
	if gerr != nil {
		return 0, fmt.Errorf("reading the original destination (SO_ORIGINAL_DST): %w", gerr)
	}
	return port, nil
}

// Close deletes the table and closes the socket; later calls return the
// first call's result. A namespace already gone is not an error.
func (l *LoopbackListener) Close() error {
	l.once.Do(func() {
		var errs []error
		if l.table {
			err := l.nft(func(c *nftables.Conn) { c.DelTable(loopbackTable()) })
			if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("deleting nftables table %s in network namespace %q: %w", LoopbackTable, l.nsPath, err))
			}
		}
		if l.TCPListener != nil {
			if err := l.TCPListener.Close(); err != nil {
				errs = append(errs, fmt.Errorf("closing the loopback socket of network namespace %q: %w", l.nsPath, err))
			}
		}
		l.err = errors.Join(errs...)
	})
	return l.err
}
