// Package proc starts the programs layerimg runs (mkfs.vfat, mcopy,
// mmdebstrap, qemu, the run-step sandbox) so that none of them
// outlives layerimg, however layerimg ends.
//
// Each child gets PR_SET_PDEATHSIG SIGKILL: the kernel kills it when the
// thread that forked it exits. When layerimg is killed every thread dies,
// so the child dies with it. A Go thread ends before its process only when
// a goroutine locked to it (runtime.LockOSThread) returns without unlocking;
// layerimg's process does not lock threads (only the sandbox child does, and
// it execs), so the signal never comes early. Go's fork sets the signal
// before exec and then checks getppid, so a parent that died in between is
// noticed too.
//
// Each child also leads a process group of its own, and cancelling the
// context kills that whole group, grandchildren included. A SIGKILL of
// layerimg cannot do that; a child whose own children must die with it
// (mmdebstrap runs apt and dpkg) runs with [KillTree] as the first process of
// a PID namespace of its own: when it dies, the kernel kills the rest.
package proc
