package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Status is a container's lifecycle state. The four OCI states plus
// "creating", which runtime-spec runtime.md also names.
type Status string

const (
	StatusCreating Status = "creating"
	StatusCreated  Status = "created"
	StatusRunning  Status = "running"
	StatusPaused   Status = "paused"
	StatusStopped  Status = "stopped"
)

// State is what the runtime keeps about a container in <root>/<id>/state.json.
// The monitor writes it; the CLI verbs read it and talk to the monitor.
type State struct {
	ID          string            `json:"id"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Status      Status            `json:"status"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Owner       string            `json:"owner"`
	// MonitorPid is the process conmon waits for; MonitorStart is its start
	// time in clock ticks (/proc/PID/stat field 22), a guard against pid
	// reuse.
	MonitorPid   int    `json:"monitorPid"`
	MonitorStart uint64 `json:"monitorStart"`
	// GuestPid is the container process's pid inside the VM.
	GuestPid uint32 `json:"guestPid,omitempty"`
	// Disk is the container's btrfs image; it lives until delete.
	Disk string `json:"disk,omitempty"`
	// ExitStatus is set once the container's process has exited.
	ExitStatus *int `json:"exitStatus,omitempty"`
	// MemoryMiB and CPUs are the VM's size, fixed at create.
	MemoryMiB int `json:"memoryMiB,omitempty"`
	CPUs      int `json:"cpus,omitempty"`
	// Sandbox is the container whose VM this one joined (member.go; ""
	// for a VM of its own).
	Sandbox string `json:"sandbox,omitempty"`
}

const (
	stateFile   = "state.json"
	monitorSock = "monitor.sock"
	lockFile    = "lock"
	// consoleLogFile is the VM's console log (the VMM writes it).
	consoleLogFile = "console.log"
	// monitorPidFile holds "<pid> <start time>" of the monitor from its
	// start, so that delete --force finds a monitor that is still
	// creating (no state.json yet), e.g. after create was killed.
	monitorPidFile = "monitor.pid"
)

// stateDir is the directory of container id under the state root.
func stateDir(c Config, id string) string { return filepath.Join(c.Root, id) }

// saveState writes st atomically.
func saveState(dir string, st *State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding state of container %q: %w", st.ID, err)
	}
	tmp, err := os.CreateTemp(dir, ".state-")
	if err != nil {
		return fmt.Errorf("writing state of container %q: %w", st.ID, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("writing state of container %q: %w", st.ID, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing state of container %q: %w", st.ID, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, stateFile)); err != nil {
		return fmt.Errorf("writing state of container %q: %w", st.ID, err)
	}
	return nil
}

// loadState reads a container's state and settles its status against the
// monitor's liveness: a container whose monitor is gone is stopped.
func loadState(c Config, id string) (*State, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(stateDir(c, id), stateFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat(stateDir(c, id)); serr == nil {
				// create has made the directory and not yet the state;
				// its monitor, once started, is named in monitorPidFile.
				st := &State{ID: id, Status: StatusCreating}
				st.MonitorPid, st.MonitorStart = readMonitorPid(stateDir(c, id))
				return st, nil
			}
			return nil, fmt.Errorf("container %q: %w", id, ErrNotExist)
		}
		return nil, fmt.Errorf("reading state of container %q: %w", id, err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("parsing state of container %q: %w", id, err)
	}
	if st.Status != StatusStopped && st.Status != StatusCreating && !monitorAlive(&st) {
		st.Status = StatusStopped
	}
	return &st, nil
}

// writeMonitorPid records a monitor that has just started in its state dir
// (monitorPidFile).
func writeMonitorPid(dir string, pid int) error {
	start, err := processStartTime(pid)
	if err != nil {
		return fmt.Errorf("reading the start time of the monitor (pid %d): %w", pid, err)
	}
	if err := os.WriteFile(filepath.Join(dir, monitorPidFile), fmt.Appendf(nil, "%d %d\n", pid, start), 0o600); err != nil {
		return fmt.Errorf("recording the monitor: %w", err)
	}
	return nil
}

// readMonitorPid reads monitorPidFile; zeros when it is missing or broken.
func readMonitorPid(dir string) (pid int, start uint64) {
	b, err := os.ReadFile(filepath.Join(dir, monitorPidFile))
	if err != nil {
		return 0, 0
	}
	if _, err := fmt.Sscanf(string(b), "%d %d", &pid, &start); err != nil || pid <= 1 {
		return 0, 0
	}
	return pid, start
}

// monitorAlive tells whether st's monitor still runs (and is the same
// process, not a reused pid).
func monitorAlive(st *State) bool {
	if st.MonitorPid <= 0 {
		return false
	}
	start, err := processStartTime(st.MonitorPid)
	if err != nil {
		return false
	}
	return start == st.MonitorStart
}

// procStat returns the fields of /proc/PID/stat after the command name,
// so that f[0] is field 3 (state) and field N is f[N-3].
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	return strings.Fields(s[i+1:]), nil
}

// processStartTime reads field 22 (starttime) of /proc/PID/stat; zombies
// count as gone.
func processStartTime(pid int) (uint64, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 20 {
		return 0, fmt.Errorf("parsing /proc/%d/stat: %d fields", pid, len(f))
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, fmt.Errorf("process %d has exited", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// OCIState is the state as runc prints it (runtime-spec runtime.md
// "State"): pid is the monitor's, 0 once stopped.
func (st *State) OCIState() *specs.State {
	pid := st.MonitorPid
	if st.Status == StatusStopped {
		pid = 0
	}
	return &specs.State{
		Version:     specs.Version,
		ID:          st.ID,
		Status:      specs.ContainerState(st.Status),
		Pid:         pid,
		Bundle:      st.Bundle,
		Annotations: st.Annotations,
	}
}

// lockState takes the container's exclusive lock (flock on <dir>/lock),
// serialising verbs that change it.
func lockState(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking %q: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %q: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

// List returns the state of every container under the root, by id.
func List(c Config) ([]*State, error) {
	entries, err := os.ReadDir(c.Root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing %q: %w", c.Root, err)
	}
	var out []*State
	for _, e := range entries {
		if !e.IsDir() || ValidateID(e.Name()) != nil {
			continue
		}
		st, err := loadState(c, e.Name())
		if err != nil {
			continue // deleted meanwhile
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
