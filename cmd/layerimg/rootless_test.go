package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerimg/layerimg/internal/userns/usernstest"
)

// nobody is the user the rootless test runs layerimg as: no capabilities,
// no groups, a home it owns.
const nobody = 65534

// TestDiskAsOrdinaryUser builds a recipe without run steps, its rootfs tar
// and its disk, then makes disks from the resulting OCI layout and from a
// rootfs tar holding what only root could unpack (devices, foreign owners,
// setuid, capabilities); once as root and once as an ordinary user. The
// bytes must not differ. It needs root to become the other user.
func TestDiskAsOrdinaryUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an ordinary user; CI runs as root")
	}
	work, bin := rootlessWork(t)
	recipe := filepath.Join(work, "recipe.yaml")
	for p, body := range map[string]string{recipe: goodRecipe + "disk: {boot: none, size: 1GiB}\n", filepath.Join(work, "hello.txt"): "hello\n"} {
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeRootTar(t, filepath.Join(work, "rootfs-in.tar"))
	if err := filepath.Walk(work, func(p string, _ os.FileInfo, err error) error {
		if err != nil || strings.HasPrefix(p, filepath.Join(work, "root")) {
			return err
		}
		return os.Lchown(p, nobody, nobody)
	}); err != nil {
		t.Fatal(err)
	}

	run := func(who string, args ...string) string {
		t.Helper()
		dir := filepath.Join(work, who)
		args = append([]string{args[0], "--cache-dir", filepath.Join(dir, "cache")}, args[1:]...)
		cmd := exec.Command(bin, args...)
		cmd.Dir = work
		cmd.Env = []string{"LAYERIMG_TEST_CLI=1", "HOME=" + dir, "PATH=" + os.Getenv("PATH"), "TMPDIR=" + dir, "SOURCE_DATE_EPOCH=1700000000"}
		if who == "user" {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("as %s: layerimg %s: %v\n%s", who, strings.Join(args, " "), err, out.String())
		}
		return dir
	}
	sums := map[string][2]string{}
	for i, who := range []string{"root", "user"} {
		dir := run(who, "build", "-o", filepath.Join(work, who, "build"), "--oci-layout", filepath.Join(work, who, "image"),
			"--rootfs-tar", filepath.Join(work, who, "rootfs.tar"), recipe)
		run(who, "disk", "--boot", "none", "--size", "1GiB", "-o", filepath.Join(dir, "from-layout"), "oci-layout:"+filepath.Join(dir, "image"))
		run(who, "disk", "--boot", "none", "--size", "1GiB", "-o", filepath.Join(dir, "from-tar"), filepath.Join(work, "rootfs-in.tar"))
		for _, f := range []string{"build/disk.raw", "rootfs.tar", "from-layout/disk.raw", "from-tar/disk.raw"} {
			s := sums[f]
			s[i] = fileSHA256(t, filepath.Join(dir, f))
			sums[f] = s
		}
	}
	for f, s := range sums {
		if s[0] != s[1] {
			t.Errorf("%s: root made %s, an ordinary user %s", f, s[0], s[1])
		}
	}
	// The user's disk is a real one: its table and root filesystem check.
	raw := filepath.Join(work, "user", "from-tar", "disk.raw")
	if out, err := exec.Command("sgdisk", "-v", raw).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
	info, err := exec.Command("sgdisk", "-i", "2", raw).CombinedOutput()
	var first int64
	if _, serr := fmt.Sscanf(after(string(info), "First sector: "), "%d", &first); err != nil || serr != nil {
		t.Fatalf("sgdisk -i 2: %v %v\n%s", err, serr, info)
	}
	if out, err := exec.Command("e2fsck", "-fn", fmt.Sprintf("%s?offset=%d", raw, first*512)).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
}

// writeRootTar writes a rootfs tar whose entries only root could create on
// a host: a device, a fifo, files of other owners, setuid, a capability.
func writeRootTar(t *testing.T, p string) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	mt := time.Unix(1600000000, 0)
	add := func(h *tar.Header, body string) {
		h.ModTime, h.Format = mt, tar.FormatPAX
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	add(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "etc/hostname", Typeflag: tar.TypeReg, Mode: 0o644}, "rootless\n")
	add(&tar.Header{Name: "home/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "home/alice/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 1000, Gid: 1000}, "")
	add(&tar.Header{Name: "home/alice/notes", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 1000, Gid: 1000}, "private\n")
	add(&tar.Header{Name: "dev/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}, "")
	add(&tar.Header{Name: "run/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "run/initctl", Typeflag: tar.TypeFifo, Mode: 0o600}, "")
	add(&tar.Header{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "usr/bin/su", Typeflag: tar.TypeReg, Mode: 0o4755}, "#!/bin/sh\n")
	add(&tar.Header{Name: "usr/bin/sudo", Typeflag: tar.TypeLink, Linkname: "usr/bin/su"}, "")
	add(&tar.Header{Name: "usr/bin/ping", Typeflag: tar.TypeReg, Mode: 0o755, PAXRecords: map[string]string{
		"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"}}, "#!/bin/sh\n")
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// after is what follows the first sep in s ("" if none).
func after(s, sep string) string {
	_, rest, _ := strings.Cut(s, sep)
	return rest
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatal(err)
	}
}

// rootlessRecipe has run steps that only root could run without a user
// namespace: they chown to other users, copy up a lower file to give it a
// new owner, make a setuid file and a fifo, delete a lower file (a whiteout)
// and replace a lower dir (an opaque dir), read a secret, and check that
// network: none leaves only loopback.
const rootlessRecipe = `name: rootless
from: scratch
steps:
  - name: busybox
    copy: {src: bin, dst: /bin}
  - name: lower
    run: |
      mkdir -p /opt/old /opt/keep
      touch /opt/old/a /opt/keep/gone /opt/keep/stays
  - name: owners
    network: none
    secrets: [{id: tok, src: token.txt}]
    run: |
      mkdir -p /home/alice /etc
      echo hi > /home/alice/notes
      chown -R 1000:1000 /home/alice
      chown 42:65534 /opt/keep/stays
      cp /bin/busybox /bin/su-like && chmod 4755 /bin/su-like
      mkfifo -m 600 /etc/initctl
      rm /opt/keep/gone
      rm -rf /opt/old && mkdir /opt/old && touch /opt/old/b
      test "$(wc -c < /run/secrets/tok)" -gt 10
      test "$(ip -o link | wc -l)" = 1
      id -u > /etc/build-uid
tests:
  - name: setuid
    run: test -u /bin/su-like && test "$(stat -c %u /home/alice/notes)" = 1000
`

const rootlessSecret = "tok-rootless-5e1f0c-very-secret"

// rootlessContext writes a build context with a static busybox as /bin/sh
// and rootlessRecipe; every file readable by everyone.
func rootlessContext(t *testing.T, dir, recipe string) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox not found: apt-get install busybox-static (make deps does)")
	}
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	copyFile(t, bb, filepath.Join(dir, "bin/busybox"), 0o755)
	for _, l := range []string{"sh", "cat", "echo", "mkdir", "rm", "ls", "touch", "cp", "chown", "chmod", "mkfifo", "ip", "wc", "test", "id", "stat", "sleep"} {
		os.Symlink("busybox", filepath.Join(dir, "bin", l))
	}
	os.WriteFile(filepath.Join(dir, "token.txt"), []byte(rootlessSecret+"\n"), 0o644)
	p := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(p, []byte(recipe), 0o644)
	return p
}

// asUser runs the CLI (the test binary) as root or, with user set, as uid
// 65534, in dir, and returns its combined output and exit code.
func asUser(t *testing.T, bin, dir string, user bool, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"LAYERIMG_TEST_CLI=1", "HOME=" + dir, "PATH=" + os.Getenv("PATH"), "TMPDIR=" + dir, "SOURCE_DATE_EPOCH=1700000000"}, env...)
	if user {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), 0
}

// rootlessWork makes a work dir with a copy of the test binary that uid
// 65534 can run, and a dir per builder: root's, the user's (owned by the
// user) and --rootless root's.
func rootlessWork(t *testing.T) (work, bin string) {
	t.Helper()
	work, err := os.MkdirTemp("", "layerimg-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	os.Chmod(work, 0o755)
	bin = filepath.Join(work, "layerimg")
	copyFile(t, os.Args[0], bin, 0o755)
	for _, who := range []string{"root", "user", "forced"} {
		os.MkdirAll(filepath.Join(work, who), 0o755)
	}
	os.Lchown(filepath.Join(work, "user"), nobody, nobody)
	return work, bin
}

// TestRunStepsRootless builds rootlessRecipe three times: as root, as an
// ordinary user (uid 65534, with a subordinate range this test adds), and
// as root with --rootless. Every layer, the image and the rootfs tar must
// be the same bytes; the manifests say which mode built each step. The
// rootless builds keep the guarantees of root's: the secret reaches no
// file, network: none has loopback only (the step checks), and nothing is
// left in the cache's scratch dir.
func TestRunStepsRootless(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an ordinary user; CI runs as root")
	}
	usernstest.Range(t, 400000, "nobody", "root")
	work, bin := rootlessWork(t)
	ctxDir := filepath.Join(work, "ctx")
	recipe := rootlessContext(t, ctxDir, rootlessRecipe)

	type manifest struct {
		Image string `json:"image_digest"`
		Steps []struct {
			Name, Layer, Mode string
		} `json:"steps"`
	}
	builds := map[string]manifest{}
	for _, b := range []struct {
		who   string
		user  bool
		extra []string
	}{{"root", false, nil}, {"user", true, nil}, {"forced", false, []string{"--rootless"}}} {
		dir := filepath.Join(work, b.who)
		args := append([]string{"build", "--cache-dir", filepath.Join(dir, "cache"), "--manifest", filepath.Join(dir, "build.json"),
			"--rootfs-tar", filepath.Join(dir, "rootfs.tar"), "--progress", "plain", recipe}, b.extra...)
		out, code := asUser(t, bin, dir, b.user, nil, args...)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s", b.who, code, out)
		}
		if strings.Contains(out, rootlessSecret) {
			t.Errorf("%s: the secret is in the build's output", b.who)
		}
		var m manifest
		data, err := os.ReadFile(filepath.Join(dir, "build.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		builds[b.who] = m
		wantMode := map[string]string{"root": "root", "user": "rootless", "forced": "rootless"}[b.who]
		for _, s := range m.Steps {
			if s.Mode != wantMode {
				t.Errorf("%s: step %s recorded mode %q, want %q", b.who, s.Name, s.Mode, wantMode)
			}
		}
		// The secret's bytes are in no file of the cache or the outputs.
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			if data, err := os.ReadFile(p); err == nil && bytes.Contains(data, []byte(rootlessSecret)) {
				t.Errorf("%s: the secret is in %s", b.who, p)
			}
			return nil
		})
		if ents, err := os.ReadDir(filepath.Join(dir, "cache", "tmp")); err != nil || len(ents) != 0 {
			t.Errorf("%s: the cache's scratch dir holds %v (%v)", b.who, ents, err)
		}
	}
	root := builds["root"]
	for _, who := range []string{"user", "forced"} {
		m := builds[who]
		if m.Image != root.Image {
			t.Errorf("%s: image %s, root's %s", who, m.Image, root.Image)
		}
		for i := range root.Steps {
			if i >= len(m.Steps) || m.Steps[i].Layer != root.Steps[i].Layer {
				t.Errorf("%s: step %s: layers differ: %+v vs root's %+v", who, root.Steps[i].Name, m.Steps, root.Steps)
				break
			}
		}
		if a, b := fileSHA256(t, filepath.Join(work, "root", "rootfs.tar")), fileSHA256(t, filepath.Join(work, who, "rootfs.tar")); a != b {
			t.Errorf("%s: rootfs.tar %s, root's %s", who, b, a)
		}
	}
	// The owners in the layers are the ids inside the namespace, never the
	// host's subordinate ones.
	entries := rootfsOwners(t, filepath.Join(work, "user", "rootfs.tar"))
	for name, want := range map[string][2]int{"home/alice/notes": {1000, 1000}, "opt/keep/stays": {42, 65534}, "bin/su-like": {0, 0}, "etc/build-uid": {0, 0}} {
		if got := entries[name]; got != want {
			t.Errorf("%s owned by %v, want %v", name, got, want)
		}
	}

	// The user's cache commands reach the lower dirs owned by its
	// subordinate ids: verify reads them, prune removes them.
	userCache := filepath.Join(work, "user", "cache")
	if out, code := asUser(t, bin, filepath.Join(work, "user"), true, nil, "cache", "verify", "--cache-dir", userCache); code != 0 {
		t.Errorf("cache verify as the user: exit %d\n%s", code, out)
	}
	if out, code := asUser(t, bin, filepath.Join(work, "user"), true, nil, "cache", "prune", "--keep-days", "0", "--cache-dir", userCache); code != 0 {
		t.Errorf("cache prune as the user: exit %d\n%s", code, out)
	}
	if ents, err := os.ReadDir(filepath.Join(userCache, "unpacked-rootless")); err != nil || len(ents) != 0 {
		t.Errorf("after prune, unpacked-rootless holds %d entries (%v)", len(ents), err)
	}

	// A step that writes the secret into the image fails as the user too,
	// and caches nothing.
	leak := rootlessContext(t, filepath.Join(work, "user", "leak"), "name: leak\nfrom: scratch\nsteps:\n  - copy: {src: bin, dst: /bin}\n  - name: leak\n    secrets: [{id: tok, src: token.txt}]\n    run: cp /run/secrets/tok /leaked\n")
	filepath.Walk(filepath.Join(work, "user", "leak"), func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			os.Lchown(p, nobody, nobody)
		}
		return nil
	})
	out, code := asUser(t, bin, filepath.Join(work, "user"), true, nil, "build", "--cache-dir", filepath.Join(work, "user", "leakcache"), "--progress", "plain", leak)
	if code != 1 || !strings.Contains(out, `the step wrote the content of secret "tok" into the image`) {
		t.Errorf("leaking step as the user: exit %d\n%s", code, out)
	}
	if ents, _ := os.ReadDir(filepath.Join(work, "user", "leakcache", "tmp")); len(ents) != 0 {
		t.Errorf("the failed build left %v in the cache's scratch dir", ents)
	}
}

// rootfsOwners reads a rootfs tar's owners by entry name.
func rootfsOwners(t *testing.T, p string) map[string][2]int {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	owners := map[string][2]int{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return owners
		}
		if err != nil {
			t.Fatal(err)
		}
		owners[strings.TrimSuffix(h.Name, "/")] = [2]int{h.Uid, h.Gid}
	}
}

// TestRootlessErrors: before any step runs, a user without a subordinate
// range is told the line to add and where, and a machine without
// newuidmap the package to install. (User namespaces switched off by
// sysctl are tested on a fake /proc/sys in internal/userns: switching them
// off here would break every other namespace on the machine.)
func TestRootlessErrors(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an ordinary user; CI runs as root")
	}
	usernstest.NoRange(t, "nobody") // nor another test's meanwhile
	work, bin := rootlessWork(t)
	recipe := rootlessContext(t, filepath.Join(work, "ctx"), rootlessRecipe)
	dir := filepath.Join(work, "user")
	build := []string{"build", "--cache-dir", filepath.Join(dir, "cache"), recipe}

	out, code := asUser(t, bin, dir, true, nil, build...)
	if code != 1 || !regexp.MustCompile(`/etc/sub[ug]id has no subordinate range for user nobody.*add the line "nobody:\d+:65536" to /etc/sub[ug]id`).MatchString(out) {
		t.Errorf("no range: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "running") || strings.Contains(out, "busybox") {
		t.Errorf("a step ran before the error:\n%s", out)
	}

	// A PATH without newuidmap: only the tools the build itself needs.
	noTools := filepath.Join(work, "path")
	os.MkdirAll(noTools, 0o755)
	out, code = asUser(t, bin, dir, true, []string{"PATH=" + noTools}, build...)
	if code != 1 || !strings.Contains(out, "rootless builds need newuidmap, which is not on PATH: install the Debian package uidmap") {
		t.Errorf("no newuidmap: exit %d\n%s", code, out)
	}
}

// TestKillRootless: a rootless build killed (SIGKILL) or interrupted
// (SIGINT) in the middle of a run step leaves no process behind 5 s later (the copy
// in the user namespace and the sandbox die with layerimg), and the next
// build on the same cache succeeds and leaves no temporary file, though
// the killed step's scratch dir belonged to subordinate ids.
func TestKillRootless(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an ordinary user; CI runs as root")
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	usernstest.Range(t, 400000, "nobody")
	work, bin := rootlessWork(t)
	dir := filepath.Join(work, "user")
	recipe := rootlessContext(t, filepath.Join(dir, "ctx"), "name: kill\nargs: {SLEEP: '0'}\nfrom: scratch\nsteps:\n  - copy: {src: bin, dst: /bin}\n  - name: slow\n    run: mkdir -p /a/b && chown 7:7 /a/b && touch /a/b/c && sleep ${SLEEP}\n")
	giveTo(t, dir)
	cache := filepath.Join(dir, "cache")
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT} {
		cmd := exec.Command(bin, "build", "--cache-dir", cache, "--arg", "SLEEP=300", recipe)
		cmd.Dir = dir
		cmd.Env = []string{"LAYERIMG_TEST_CLI=1", "HOME=" + dir, "PATH=" + os.Getenv("PATH"), "TMPDIR=" + dir}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if !waitForChild("sleep", 30*time.Second) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("%v: the step's sleep never appeared:\n%s", sig, out.String())
		}
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		if sig == syscall.SIGINT {
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
				t.Errorf("SIGINT: %v, want exit 130\n%s", err, out.String())
			}
		}
		// Killed processes can take a moment to go on a busy machine:
		// the last one of a PID namespace tears down its mount namespace
		// (overlayfs included) as it exits, in state D.
		var left []string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if left = descendants(); len(left) == 0 || time.Now().After(deadline) {
				break
			}
		}
		for _, p := range left {
			pid, _ := strconv.Atoi(strings.Fields(p)[0])
			st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			t.Errorf("%v: still alive 5 s after: %s\n%s", sig, p, st)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if out, code := asUser(t, bin, dir, true, nil, "build", "--cache-dir", cache, recipe); code != 0 {
		t.Fatalf("rebuild: exit %d\n%s", code, out)
	}
	if tmp := tempFiles(t, cache); len(tmp) > 0 {
		t.Errorf("temporary files left in the cache after the rebuild:\n  %s", strings.Join(tmp, "\n  "))
	}
}

func giveTo(t *testing.T, dir string) {
	t.Helper()
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			os.Lchown(p, nobody, nobody)
		}
		return nil
	})
}
