package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
	work, err := os.MkdirTemp("", "layerimg-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	bin := filepath.Join(work, "layerimg")
	copyFile(t, os.Args[0], bin, 0o755)
	recipe := filepath.Join(work, "recipe.yaml")
	for p, body := range map[string]string{recipe: goodRecipe + "disk: {boot: none, size: 1GiB}\n", filepath.Join(work, "hello.txt"): "hello\n"} {
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeRootTar(t, filepath.Join(work, "rootfs-in.tar"))
	for _, who := range []string{"root", "user"} {
		os.MkdirAll(filepath.Join(work, who), 0o755)
	}
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
