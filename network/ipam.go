package network

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// lockTimeout bounds the wait for another process's lock.
const lockTimeout = 10 * time.Second

// IPAM hands out the host addresses of an IPv4 subnet for bridge mode. Each
// lease is a file <Dir>/<ip> holding its owner's id; every operation holds an
// exclusive flock of <Dir>/lock, so processes share it safely. The network
// address, the gateway (the first host, .1 in a /24) and the broadcast
// address are never handed out.
type IPAM struct {
	Dir    string
	Subnet net.IPNet
}

// Gateway is the first host address of the subnet, with its mask: the
// bridge's address.
func (m *IPAM) Gateway() (net.IPNet, error) {
	base, _, err := m.bounds()
	if err != nil {
		return net.IPNet{}, err
	}
	return net.IPNet{IP: uint32ToIP(base + 1), Mask: m.Subnet.Mask}, nil
}

// Allocate returns owner's address: its existing lease, or the lowest free
// address after the leases of owners for which alive returns false (when
// alive is not nil) have been reclaimed. A full subnet is ErrExhausted.
func (m *IPAM) Allocate(owner string, alive func(owner string) bool) (_ net.IPNet, retErr error) {
	if err := checkOwner(owner); err != nil {
		return net.IPNet{}, err
	}
	base, bcast, err := m.bounds()
	if err != nil {
		return net.IPNet{}, err
	}
	unlock, err := m.lock()
	if err != nil {
		return net.IPNet{}, err
	}
	defer unlock()
	leases, err := m.leases()
	if err != nil {
		return net.IPNet{}, err
	}
	for ip, o := range leases {
		if o == owner {
			return net.IPNet{IP: uint32ToIP(ip), Mask: m.Subnet.Mask}, nil
		}
	}
	if alive != nil {
		for ip, o := range leases {
			if alive(o) {
				continue
			}
			if err := os.Remove(m.leasePath(ip)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return net.IPNet{}, fmt.Errorf("reclaiming lease %s of %q: %w", uint32ToIP(ip), o, err)
			}
			delete(leases, ip)
		}
	}
	for ip := base + 2; ip < bcast; ip++ {
		if _, taken := leases[ip]; taken {
			continue
		}
		if err := writeFileAtomic(m.leasePath(ip), []byte(owner+"\n"), 0o644); err != nil {
			return net.IPNet{}, fmt.Errorf("writing lease %s for %q: %w", uint32ToIP(ip), owner, err)
		}
		return net.IPNet{IP: uint32ToIP(ip), Mask: m.Subnet.Mask}, nil
	}
	return net.IPNet{}, fmt.Errorf("allocating an address for %q in %s: %w (%d leases)", owner, m.Subnet.String(), ErrExhausted, len(leases))
}

// Release drops every lease of owner. An owner without a lease is not an error.
func (m *IPAM) Release(owner string) error {
	if err := checkOwner(owner); err != nil {
		return err
	}
	if _, _, err := m.bounds(); err != nil {
		return err
	}
	unlock, err := m.lock()
	if err != nil {
		return err
	}
	defer unlock()
	leases, err := m.leases()
	if err != nil {
		return err
	}
	for ip, o := range leases {
		if o != owner {
			continue
		}
		if err := os.Remove(m.leasePath(ip)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("releasing lease %s of %q: %w", uint32ToIP(ip), owner, err)
		}
	}
	return nil
}

// bounds returns the network and broadcast addresses of the subnet.
func (m *IPAM) bounds() (base, bcast uint32, err error) {
	ones, bits := m.Subnet.Mask.Size()
	ip4 := m.Subnet.IP.To4()
	if ip4 == nil || bits != 32 || ones > 30 || ones < 8 {
		return 0, 0, fmt.Errorf("IPAM subnet %s: %w: want IPv4 with a prefix from /8 to /30", m.Subnet.String(), ErrInvalidArgument)
	}
	if m.Dir == "" {
		return 0, 0, fmt.Errorf("IPAM for %s: %w: empty directory", m.Subnet.String(), ErrInvalidArgument)
	}
	mask := binary.BigEndian.Uint32(m.Subnet.Mask)
	base = binary.BigEndian.Uint32(ip4) & mask
	return base, base | ^mask, nil
}

func (m *IPAM) leasePath(ip uint32) string {
	return filepath.Join(m.Dir, uint32ToIP(ip).String())
}

// leases reads the lease files of the subnet: address → owner. Other files
// (the lock, temporary files, leases of other subnets) are ignored.
func (m *IPAM) leases() (map[uint32]string, error) {
	entries, err := os.ReadDir(m.Dir)
	if err != nil {
		return nil, fmt.Errorf("reading IPAM directory %q: %w", m.Dir, err)
	}
	leases := make(map[uint32]string, len(entries))
	for _, e := range entries {
		ip := net.ParseIP(e.Name()).To4()
		if ip == nil || !e.Type().IsRegular() || !m.Subnet.Contains(ip) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(m.Dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading lease %q: %w", filepath.Join(m.Dir, e.Name()), err)
		}
		leases[binary.BigEndian.Uint32(ip)] = strings.TrimSpace(string(b))
	}
	return leases, nil
}

// lock takes the exclusive flock of <Dir>/lock, creating Dir if needed.
func (m *IPAM) lock() (unlock func(), err error) {
	if err := os.MkdirAll(m.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating IPAM directory: %w", err)
	}
	return lockFile(filepath.Join(m.Dir, "lock"))
}

// lockFile takes an exclusive flock of path (created if missing), waiting at
// most lockTimeout.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock %q: %w", path, err)
	}
	deadline := time.Now().Add(lockTimeout)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing drops the flock
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %q: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("locking %q: still held by another process after %v", path, lockTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// writeFileAtomic writes data to a temporary file next to path and renames
// it over path: readers see the old or the new content, never a part.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (retErr error) {
	b := make([]byte, 6)
	rand.Read(b)
	tmp := path + ".tmp-" + hex.EncodeToString(b)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func checkOwner(owner string) error {
	if owner == "" || len(owner) > 1024 || strings.ContainsAny(owner, "\n\x00") || strings.TrimSpace(owner) != owner {
		return fmt.Errorf("IPAM owner %q: %w: want 1 to 1024 bytes, no newline, NUL or surrounding space", owner, ErrInvalidArgument)
	}
	return nil
}

func uint32ToIP(v uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, v)
	return ip
}
