package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestConvertCommand(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	f, _ := os.Create(raw)
	f.Truncate(16 << 20)
	f.WriteAt([]byte("some data"), 5<<20)
	f.Close()
	for _, to := range []string{"vmdk", "qcow2", "vhd"} {
		out, errOut, code := cli(t, "convert", raw, "--to", to)
		want := filepath.Join(dir, "disk."+to)
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("convert --to %s: exit %d\n%s%s", to, code, out, errOut)
		}
		format := map[string]string{"vmdk": "vmdk", "qcow2": "qcow2", "vhd": "vpc"}[to]
		if b, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", format, raw, want).CombinedOutput(); err != nil {
			t.Errorf("qemu-img compare %s: %v %s", to, err, b)
		}
	}
	// The same raw disk converts to the same bytes. (The descriptor names
	// the file, so keep the name.)
	a, _ := os.ReadFile(filepath.Join(dir, "disk.vmdk"))
	again := filepath.Join(t.TempDir(), "disk.vmdk")
	cli(t, "convert", raw, "--to", "vmdk", "-o", again)
	b, _ := os.ReadFile(again)
	if string(a) != string(b) {
		t.Error("converting twice gave different VMDKs")
	}
	if _, errOut, code := cli(t, "convert", raw, "--to", "iso"); code != 2 || !strings.Contains(errOut, `--to "iso"`) {
		t.Errorf("bad --to: exit %d %s", code, errOut)
	}
	if _, errOut, code := cli(t, "convert", raw, "--to", "vmdk", "--in-place"); code != 1 || !strings.Contains(errOut, "--in-place works only for vhd") {
		t.Errorf("in-place vmdk: exit %d %s", code, errOut)
	}
	if _, errOut, code := cli(t, "convert", raw, "--to", "vhd", "--in-place"); code != 0 {
		t.Errorf("in-place vhd: exit %d %s", code, errOut)
	}
	if fi, _ := os.Stat(raw); fi.Size() != 16<<20+512 {
		t.Errorf("in-place vhd size %d", fi.Size())
	}
	if _, errOut, code := cli(t, "convert", filepath.Join(dir, "missing.raw"), "--to", "vhd"); code != 1 || !strings.Contains(errOut, "missing.raw") {
		t.Errorf("missing input: exit %d %s", code, errOut)
	}
}

func TestDiskAndBootCommands(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc/hostname"), []byte("data\n"), 0o644)
	tarball := filepath.Join(dir, "rootfs.tar")
	if b, err := exec.Command("tar", "-cf", tarball, "-C", tree, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, b)
	}
	cache := filepath.Join(dir, "cache")
	sums := map[string]string{}
	for _, run := range []struct {
		name string
		args []string
	}{
		{"a", nil}, {"b", nil}, {"unique", []string{"--unique-ids"}},
	} {
		out := filepath.Join(dir, run.name)
		args := append([]string{"disk", "--cache-dir", cache, "--sha256", "-o", out, "--format", "raw,qcow2", tarball}, run.args...)
		stdout, errOut, code := cli(t, args...)
		if code != 0 {
			t.Fatalf("disk %v: exit %d %s", run.args, code, errOut)
		}
		sums[run.name] = strings.Fields(stdout)[0]
		if b, err := exec.Command("sgdisk", "-v", filepath.Join(out, "disk.raw")).CombinedOutput(); err != nil || !strings.Contains(string(b), "No problems found") {
			t.Errorf("sgdisk -v: %v %s", err, b)
		}
	}
	if sums["a"] != sums["b"] || sums["a"] == sums["unique"] {
		t.Errorf("sha256: a %s, b %s, unique %s", sums["a"], sums["b"], sums["unique"])
	}
	// A tree without a kernel cannot be made bootable.
	if _, errOut, code := cli(t, "disk", "--cache-dir", cache, "--boot", "systemd-boot", "-o", filepath.Join(dir, "c"), tarball); code != 1 || !strings.Contains(errOut, "systemd-boot-efi") {
		t.Errorf("boot without loader: exit %d %s", code, errOut)
	}
	if _, errOut, code := cli(t, "disk", "--size", "big", tarball); code != 2 || !strings.Contains(errOut, "--size") {
		t.Errorf("bad size: exit %d %s", code, errOut)
	}
	// A data disk does not boot: OVMF gives up and the command says so.
	out, errOut, code := cli(t, "boot", filepath.Join(dir, "a", "disk.qcow2"), "--timeout", "200s")
	if code != 1 || !strings.Contains(errOut, "boot failed") {
		t.Errorf("boot of a data disk: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, errOut, code := cli(t, "boot", filepath.Join(dir, "nope.raw")); code != 1 || !strings.Contains(errOut, "nope.raw") {
		t.Errorf("boot of a missing disk: exit %d %s", code, errOut)
	}
}
