package proc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// With PROC_TEST_PARENT set, the test binary plays layerimg: it starts a
// shell that starts two sleeps, prints the shell's pid and waits to be
// killed.
func TestMain(m *testing.M) {
	if mode := os.Getenv("PROC_TEST_PARENT"); mode != "" {
		cmd := Command(context.Background(), "/bin/sh", "-c", "sleep 60 & a=$!; sleep 60 & echo $$ $a $!; wait")
		if mode == "tree" {
			KillTree(cmd)
		}
		cmd.Stdout = os.Stdout
		if err := cmd.Start(); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		cmd.Wait()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startTree runs the test binary as a parent of sh and two sleeps and
// returns it and their pids, as the sandbox or mmdebstrap would stand.
func startTree(t *testing.T, mode string) (*exec.Cmd, []int) {
	t.Helper()
	parent := exec.Command(os.Args[0])
	parent.Env = append(os.Environ(), "PROC_TEST_PARENT="+mode)
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	n, _ := out.Read(buf)
	var pids []int
	for _, f := range strings.Fields(string(buf[:n])) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("parent said %q", buf[:n])
		}
		pids = append(pids, pid)
	}
	if len(pids) != 3 {
		t.Fatalf("parent said %q", buf[:n])
	}
	return parent, pids
}

// alive says which of pids still run, as seen from here (a pid namespace's
// processes have host pids too, but sh's $$ and jobs say the inner ones).
func alive(pids []int) []int {
	var out []int
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && f[0] != "Z" {
			out = append(out, pid)
		}
	}
	return out
}

func TestChildDiesWithParent(t *testing.T) {
	parent, pids := startTree(t, "child")
	parent.Process.Signal(syscall.SIGKILL)
	parent.Wait()
	deadline := time.Now().Add(time.Second)
	for alive(pids[:1]) != nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if left := alive(pids[:1]); left != nil {
		t.Errorf("the child outlived its parent's SIGKILL: %v", left)
	}
	for _, pid := range alive(pids[1:]) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

func TestTreeDiesWithParent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a PID namespace needs root")
	}
	parent, _ := startTree(t, "tree")
	// In its namespace sh is pid 1 and the sleeps 2 and 3: find the host
	// pids of the parent's descendants instead.
	var pids []int
	for _, p := range childrenOf(parent.Process.Pid) {
		pids = append(pids, p)
		pids = append(pids, childrenOf(p)...)
	}
	if len(pids) != 3 {
		t.Fatalf("want sh and two sleeps, found pids %v", pids)
	}
	parent.Process.Signal(syscall.SIGKILL)
	parent.Wait()
	deadline := time.Now().Add(time.Second)
	for alive(pids) != nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if left := alive(pids); left != nil {
		t.Errorf("outlived the parent's SIGKILL: %v", left)
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func TestCancelKillsGroup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := Command(ctx, "/bin/sh", "-c", "sleep 60 & a=$!; sleep 60 & echo $a $!; wait")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	n, _ := out.Read(buf)
	var pids []int
	for _, f := range strings.Fields(string(buf[:n])) {
		pid, _ := strconv.Atoi(f)
		pids = append(pids, pid)
	}
	cancel()
	cmd.Wait()
	deadline := time.Now().Add(time.Second)
	for alive(pids) != nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if left := alive(pids); len(pids) != 2 || left != nil {
		t.Errorf("sleeps %v: %v outlived the cancel", pids, left)
	}
}

// childrenOf lists pid's children's pids.
func childrenOf(pid int) []int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var out []int
	for _, f := range strings.Fields(string(b)) {
		n, _ := strconv.Atoi(f)
		out = append(out, n)
	}
	// The children file lists a task's own children only.
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		if task.Name() == strconv.Itoa(pid) {
			continue
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		for _, f := range strings.Fields(string(b)) {
			n, _ := strconv.Atoi(f)
			out = append(out, n)
		}
	}
	return out
}
