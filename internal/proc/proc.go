package proc

import (
	"context"
	"os"
	"os/exec"
	"syscall"
)

// Command is exec.CommandContext for a program that must not outlive
// layerimg: it is killed when layerimg dies, and cancelling ctx kills its
// whole process group.
func Command(ctx context.Context, name string, arg ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, arg...)
	Own(cmd)
	return cmd
}

// Own gives cmd, made by exec.CommandContext and not yet started, what
// Command gives: SIGKILL on layerimg's death, a process group of its own,
// and a kill of that group on cancel. It keeps cmd.SysProcAttr's other
// settings.
func Own(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pgid = 0
	cmd.Cancel = func() error {
		// The group's id is its leader's pid. A group already gone is
		// not an error of the command's.
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if err == syscall.ESRCH {
			return os.ErrProcessDone
		}
		return err
	}
}

// KillTree makes every descendant of cmd, not yet started, die when cmd
// does: as root, cmd starts as the first process of a new PID namespace, and
// the kernel kills a namespace's processes when its first one dies (by
// Command's signal on layerimg's death, or a cancel). Without root there is
// no namespace to be had, and only the process group is killed, on cancel.
// cmd must not need to see processes outside its tree.
func KillTree(cmd *exec.Cmd) {
	if os.Geteuid() != 0 {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWPID
}
