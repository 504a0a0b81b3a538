package rootfs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"time"
)

// The agent is how a program on the host (Ansible, through the connection
// plugin in layers/ansible) works inside a sandbox: the sandbox's first
// process, once it has pivoted into the image and dropped its capabilities,
// serves requests on a unix socket the host listens on instead of executing
// a command. Files are written and read by the agent from inside the
// sandbox, so a path names the image's file, never the host's.
//
// Each connection carries one request: a JSON header line (AgentRequest)
// and Size bytes of data; the answer is a JSON header line (AgentReply) and
// Size bytes of data.

// AgentRequest is one request to the agent.
type AgentRequest struct {
	Op   string   `json:"op"` // exec, put, fetch or exit
	Argv []string `json:"argv,omitempty"`
	Path string   `json:"path,omitempty"`
	Size int64    `json:"size"` // bytes of data after the header: stdin or the file
}

// AgentReply answers an AgentRequest. For exec, the data is Stdout bytes of
// standard output, then the rest, standard error.
type AgentReply struct {
	Error  string `json:"error,omitempty"`
	RC     int    `json:"rc"`
	Stdout int64  `json:"stdout"`
	Size   int64  `json:"size"`
}

// agentFD is the listening socket's descriptor in the sandbox: Run passes
// spec.AgentListener after the spec pipe (3).
const agentFD = 4

// maxAgentHeader bounds a request's header line; the data that follows is
// bounded by what the sandbox can hold.
const maxAgentHeader = 1 << 20

// serveAgent drops the capabilities a step must not have and serves the
// agent's requests until one says exit. It runs on the locked thread that
// dropped them: commands are forked from it and so inherit the same limits.
func serveAgent(last int, env []string) error {
	if err := dropCaps(last); err != nil {
		return err
	}
	f := os.NewFile(agentFD, "agent")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("agent socket: %w", err)
	}
	for {
		conn, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("agent socket: %w", err)
		}
		exit := serveOne(conn, env)
		conn.Close()
		if exit {
			os.Exit(0)
		}
	}
}

// serveOne answers one connection's request and reports whether it asked
// the agent to exit. A broken request is answered with its error, when the
// connection still takes one; the agent goes on.
func serveOne(conn net.Conn, env []string) (exit bool) {
	br := bufio.NewReader(conn)
	line, err := readLine(br)
	if err != nil {
		replyErr(conn, err)
		return false
	}
	var req AgentRequest
	if err := json.Unmarshal(line, &req); err != nil {
		replyErr(conn, fmt.Errorf("bad request: %w", err))
		return false
	}
	if req.Size < 0 {
		replyErr(conn, errors.New("bad request: negative size"))
		return false
	}
	data := io.LimitReader(br, req.Size)
	switch req.Op {
	case "exit":
		reply(conn, AgentReply{}, nil, 0)
		return true
	case "exec":
		if len(req.Argv) == 0 {
			replyErr(conn, errors.New("exec: no command"))
			return false
		}
		cmd := exec.Command(req.Argv[0], req.Argv[1:]...)
		cmd.Env, cmd.Dir = env, "/"
		var stdout, stderr bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = data, &stdout, &stderr
		rep := AgentReply{}
		if err := cmd.Run(); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				replyErr(conn, fmt.Errorf("exec %s: %w", req.Argv[0], err))
				return false
			}
			rep.RC = ee.ExitCode()
		}
		rep.Stdout = int64(stdout.Len())
		reply(conn, rep, io.MultiReader(&stdout, &stderr), int64(stdout.Len()+stderr.Len()))
	case "put":
		// 0600 as ssh's put makes temporary files: Ansible chmods what
		// needs more, and modules set the final mode themselves.
		out, err := os.OpenFile(req.Path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err == nil {
			_, err = io.Copy(out, data)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			replyErr(conn, fmt.Errorf("put %s: %w", req.Path, err))
			return false
		}
		reply(conn, AgentReply{}, nil, 0)
	case "fetch":
		in, err := os.Open(req.Path)
		var fi os.FileInfo
		if err == nil {
			fi, err = in.Stat()
			defer in.Close()
		}
		if err == nil && !fi.Mode().IsRegular() {
			err = errors.New("not a regular file")
		}
		if err != nil {
			replyErr(conn, fmt.Errorf("fetch %s: %w", req.Path, err))
			return false
		}
		reply(conn, AgentReply{}, in, fi.Size())
	default:
		replyErr(conn, fmt.Errorf("unknown op %q", req.Op))
	}
	return false
}

func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			return nil, fmt.Errorf("reading request: %w", err)
		}
		line = append(line, chunk...)
		if len(line) > maxAgentHeader {
			return nil, errors.New("request header too long")
		}
		if !isPrefix {
			return line, nil
		}
	}
}

// reply writes rep and, with body, size bytes of it. Write errors are the
// client's to see: it went away.
func reply(w io.Writer, rep AgentReply, body io.Reader, size int64) {
	rep.Size = size
	hdr, _ := json.Marshal(rep)
	if _, err := w.Write(append(hdr, '\n')); err != nil || body == nil {
		return
	}
	_, _ = io.CopyN(w, body, rep.Size)
}

func replyErr(w io.Writer, err error) { reply(w, AgentReply{Error: err.Error(), RC: -1}, nil, 0) }

// AgentDo sends one request, with data, to the agent listening at socket
// and returns its reply and the reply's data. A reply's Error is returned
// as an error.
func AgentDo(ctx context.Context, socket string, req AgentRequest, data []byte) (AgentReply, []byte, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return AgentReply{}, nil, fmt.Errorf("connecting to the sandbox's agent: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	req.Size = int64(len(data))
	hdr, err := json.Marshal(req)
	if err != nil {
		return AgentReply{}, nil, err
	}
	if _, err := conn.Write(append(append(hdr, '\n'), data...)); err != nil {
		return AgentReply{}, nil, fmt.Errorf("talking to the sandbox's agent: %w", err)
	}
	br := bufio.NewReader(conn)
	line, err := readLine(br)
	if err != nil {
		return AgentReply{}, nil, fmt.Errorf("the sandbox's agent: %w", err)
	}
	var rep AgentReply
	if err := json.Unmarshal(line, &rep); err != nil {
		return rep, nil, fmt.Errorf("the sandbox's agent: bad reply: %w", err)
	}
	body := make([]byte, rep.Size)
	if _, err := io.ReadFull(br, body); err != nil {
		return rep, nil, fmt.Errorf("the sandbox's agent: reading its reply: %w", err)
	}
	if rep.Error != "" {
		return rep, body, errors.New(rep.Error)
	}
	return rep, body, nil
}
