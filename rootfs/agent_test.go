package rootfs

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startAgent runs a sandbox over lower that serves the agent, and returns
// its socket and the upper dir. The sandbox is told to exit when the test
// ends, and must.
func startAgent(t *testing.T, lower string) (string, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	lf, err := ln.File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	spec := RunSpec{Lowers: []string{lower}, Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, Network: "none", Agent: true, AgentListener: lf}
	if err := spec.InScratch(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() { done <- Run(ctx, spec, &out) }()
	t.Cleanup(func() {
		defer cancel()
		defer lf.Close()
		if _, _, err := AgentDo(ctx, sock, AgentRequest{Op: "exit"}, nil); err != nil {
			t.Errorf("exit: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("the sandbox did not exit cleanly: %v\n%s", err, out.String())
		}
	})
	return sock, spec.Upper
}

func TestAgent(t *testing.T) {
	needSandbox(t)
	sock, upper := startAgent(t, probeImage(t))
	ctx := context.Background()

	// Commands the agent runs get a step's capabilities, not its own.
	rep, body, err := AgentDo(ctx, sock, AgentRequest{Op: "exec", Argv: []string{"/probe", "caps"}}, nil)
	if err != nil || rep.RC != 0 {
		t.Fatalf("exec: %+v %v %s", rep, err, body)
	}
	want := fmt.Sprintf("CapBnd=%016x", capMask(dockerCaps))
	if !strings.Contains(string(body[:rep.Stdout]), want) {
		t.Errorf("caps of an agent's command: %s, want %s", body, want)
	}

	// put writes inside the image, fetch reads it back; neither reaches
	// the host's paths.
	if _, _, err := AgentDo(ctx, sock, AgentRequest{Op: "put", Path: "/tmp/put-by-agent"}, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(upper, "tmp/put-by-agent")); err != nil || string(data) != "hello" {
		t.Errorf("put did not land in the upper dir: %q %v", data, err)
	}
	if _, err := os.Stat("/tmp/put-by-agent"); err == nil {
		t.Errorf("put reached the host's /tmp")
	}
	if _, data, err := AgentDo(ctx, sock, AgentRequest{Op: "fetch", Path: "/tmp/put-by-agent"}, nil); err != nil || string(data) != "hello" {
		t.Errorf("fetch: %q %v", data, err)
	}
	host := filepath.Join(t.TempDir(), "host-only")
	os.WriteFile(host, []byte("host"), 0o644)
	if _, _, err := AgentDo(ctx, sock, AgentRequest{Op: "fetch", Path: host}, nil); err == nil {
		t.Errorf("fetch read a host file: %s", host)
	}

	// A failing command is an exit code, and a broken request an error;
	// the agent goes on.
	if rep, _, err := AgentDo(ctx, sock, AgentRequest{Op: "exec", Argv: []string{"/no/such/command"}}, nil); err == nil {
		t.Errorf("exec of a missing command: %+v", rep)
	}
	if _, _, err := AgentDo(ctx, sock, AgentRequest{Op: "format-disk"}, nil); err == nil || !strings.Contains(err.Error(), "unknown op") {
		t.Errorf("unknown op: %v", err)
	}
	if _, _, err := AgentDo(ctx, sock, AgentRequest{Op: "exec", Argv: []string{"/probe", "caps"}}, nil); err != nil {
		t.Errorf("the agent stopped after bad requests: %v", err)
	}
}
