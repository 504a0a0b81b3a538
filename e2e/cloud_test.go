package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/disk/disktest"
	"github.com/layerimg/layerimg/disk/qemu"
	"github.com/layerimg/layerimg/disk/vhd"
	"github.com/layerimg/layerimg/recipes"
	"github.com/layerimg/layerimg/rootfs"
)

// TestDebianCloud builds recipes/examples/debian-cloud.yaml into all four
// disk formats, boots it (virtio and NVMe, as the recipe's boot test says),
// checks every disk with tools nobody here wrote, compares the disk with the
// image, boots the grub layout with Secure Boot on, and rebuilds it cold to
// check the disk is byte for byte the same. Several minutes under TCG.
func TestDebianCloud(t *testing.T) {
	ctx := context.Background()
	fx := debianCloud(t)
	res, o := fx.Res, fx.Opts
	r, err := recipes.Load("../recipes/examples/debian-cloud.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	// For the rootless build's figures beside it.
	t.Logf("root build: %s", fx.Took.Round(time.Second))
	if res.Disk == nil || res.Disk.Boot != "systemd-boot" || len(res.Disk.Files) != 4 {
		t.Fatalf("disk result %+v", res.Disk)
	}
	if n := strings.Count(fx.Console, "login: "); n < 2 {
		t.Errorf("the boot test reached %d login prompts, want 2 (virtio, nvme)", n)
	}
	raw := res.Disk.Files["raw"].Path

	t.Run("oracles", func(t *testing.T) {
		if v := run(t, "sgdisk", "-v", raw); !strings.Contains(v, "No problems found") {
			t.Errorf("sgdisk -v:\n%s", v)
		}
		p1, p2 := partitions(t, raw)
		run(t, "e2fsck", "-fn", fmt.Sprintf("%s?offset=%d", raw, p2[0]))
		esp := filepath.Join(t.TempDir(), "esp.img")
		run(t, "dd", "if="+raw, "of="+esp, "bs=1M", fmt.Sprintf("skip=%d", p1[0]>>20), fmt.Sprintf("count=%d", p1[1]>>20), "status=none")
		run(t, "fsck.vfat", "-n", esp)
		for _, f := range []string{"qcow2", "vmdk"} {
			run(t, "qemu-img", "check", res.Disk.Files[f].Path)
		}
		if err := vhd.Check(res.Disk.Files["vhd"].Path); err != nil {
			t.Error(err)
		}
		for f, name := range map[string]string{"qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vpc"} {
			run(t, "qemu-img", "compare", "-f", "raw", "-F", name, raw, res.Disk.Files[f].Path)
		}
	})

	t.Run("disk matches image", func(t *testing.T) {
		img := layoutImage(t, o.OCILayout)
		ls, _ := img.Layers()
		last, _ := ls[len(ls)-1].Digest()
		if last.String() != res.Disk.Layer {
			t.Errorf("the image's last layer is %s, the disk's generated layer %s", last, res.Disk.Layer)
		}
		tree := t.TempDir()
		applyAll(t, img, tree)
		_, p2 := partitions(t, raw)
		mnt := t.TempDir()
		run(t, "mount", "-t", "ext4", "-o", fmt.Sprintf("loop,ro,offset=%d,sizelimit=%d", p2[0], p2[1]), raw, mnt)
		defer exec.Command("umount", mnt).Run()
		disktest.CompareTrees(t, tree, mnt, true, "boot/efi/")
		p1, _ := partitions(t, raw)
		esp := t.TempDir()
		cmd := exec.Command("mcopy", "-s", "-n", "-i", fmt.Sprintf("%s@@%d", raw, p1[0]), "::/EFI", "::/loader", esp)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mcopy: %v %s", err, b)
		}
		disktest.CompareTrees(t, filepath.Join(tree, "boot/efi/EFI"), filepath.Join(esp, "EFI"), false)
		disktest.CompareTrees(t, filepath.Join(tree, "boot/efi/loader"), filepath.Join(esp, "loader"), false)
	})

	t.Run("rebuild reuses disks", func(t *testing.T) {
		o2 := o
		o2.DiskDir, o2.OCILayout, o2.Manifest = t.TempDir(), "", ""
		r2 := *r
		r2.Tests = nil
		res2, err := layerimg.Build(ctx, &r2, o2)
		if err != nil {
			t.Fatal(err)
		}
		if !res2.Disk.Cached || res2.Executed != 0 || res2.Disk.Files["raw"].SHA256 != res.Disk.Files["raw"].SHA256 {
			t.Errorf("cached %v, executed %d, sha %s vs %s", res2.Disk.Cached, res2.Executed, res2.Disk.Files["raw"].SHA256, res.Disk.Files["raw"].SHA256)
		}
	})

	t.Run("grub with secure boot", func(t *testing.T) {
		dir := t.TempDir()
		d, err := layerimg.DiskFromSource(ctx, "oci-layout:"+o.OCILayout, recipes.Disk{Boot: "grub"}, []string{"raw"}, dir, false, layerimg.Options{CacheDir: o.CacheDir})
		if err != nil {
			t.Fatal(err)
		}
		var con bytes.Buffer
		err = qemu.Boot(ctx, qemu.Options{Disk: d.Files["raw"].Path, SecureBoot: true, Console: &con})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(con.String(), "Secure boot enabled") {
			t.Errorf("booted, but Secure Boot was not on:\n%s", tail(con.String()))
		}
		// The systemd-boot disk is unsigned: Secure Boot must refuse it.
		err = qemu.Boot(ctx, qemu.Options{Disk: raw, SecureBoot: true, Timeout: 120e9})
		if err == nil || !strings.Contains(err.Error(), "Access Denied") {
			t.Errorf("unsigned loader under Secure Boot: %v", err)
		}
	})

	// The cold rebuild is also the rootless one (issue 13's done-when): an
	// ordinary user with a subordinate range runs the documented command,
	// bootstrap, run steps and boot tests included, in a cache of its own.
	// Its layers and disk must be root's bytes. One cold build shows both
	// that cold builds repeat and that the mode changes nothing.
	t.Run("cold rootless rebuild is byte-identical", func(t *testing.T) {
		res3 := rootlessBuild(t, "../recipes/examples/debian-cloud.yaml")
		if res3.Executed == 0 || res3.Disk == nil || res3.Disk.Cached {
			t.Fatalf("the cold build reused something: %+v", res3)
		}
		if res3.Base.Digest != res.Base.Digest || res3.Base.Mode != "rootless" {
			t.Errorf("bootstrap: %s (%s) vs root's %s", res3.Base.Digest, res3.Base.Mode, res.Base.Digest)
		}
		for i := range res.Steps {
			if res.Steps[i].Layer != res3.Steps[i].Layer || res3.Steps[i].Mode != "rootless" {
				t.Errorf("step %s: layer %s (%s) vs root's %s", res.Steps[i].Name, res3.Steps[i].Layer, res3.Steps[i].Mode, res.Steps[i].Layer)
			}
		}
		if res3.Image != res.Image {
			t.Errorf("image %s vs root's %s", res3.Image, res.Image)
		}
		for f, df := range res.Disk.Files {
			if got := res3.Disk.Files[f].SHA256; got != df.SHA256 {
				t.Errorf("disk.%s sha256 %s vs root's %s", f, got, df.SHA256)
			}
		}
	})
}

// partitions reads the two partitions' byte offsets and sizes with sgdisk.
func partitions(t *testing.T, raw string) (p1, p2 [2]int64) {
	t.Helper()
	get := func(n int) [2]int64 {
		info := run(t, "sgdisk", "-i", fmt.Sprint(n), raw)
		var first, last int64
		for _, line := range strings.Split(info, "\n") {
			if strings.HasPrefix(line, "First sector:") {
				fmt.Sscanf(strings.TrimPrefix(line, "First sector:"), "%d", &first)
			}
			if strings.HasPrefix(line, "Last sector:") {
				fmt.Sscanf(strings.TrimPrefix(line, "Last sector:"), "%d", &last)
			}
		}
		return [2]int64{first * 512, (last - first + 1) * 512}
	}
	return get(1), get(2)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func tail(s string) string {
	if len(s) > 3000 {
		return s[len(s)-3000:]
	}
	return s
}

// applyAll unpacks img's layers onto dir with rootfs.Apply: the host
// extraction the disk's streamed filesystem is checked against.
func applyAll(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range ls {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		err = rootfs.Apply(context.Background(), dir, rc, rootfs.ApplyOptions{Layer: fmt.Sprint("layer ", i+1)})
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}
