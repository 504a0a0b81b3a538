package format

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/layerimg/layerimg/disk/disktest"
)

// Every format's writer output is recognised by Sniff as that format,
// whatever its name, and a raw disk is raw.
func TestConvertThenSniff(t *testing.T) {
	raw := disktest.MakeRaw(t, 4<<20, 0, 1<<20)
	for _, f := range All() {
		t.Run(string(f), func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "disk.img") // the name says nothing
			if err := Convert(context.Background(), raw, dst, f, Stamp{Created: time.Unix(0, 0)}); err != nil {
				t.Fatal(err)
			}
			got, err := Sniff(dst)
			if err != nil || got != f {
				t.Errorf("Sniff = %q, %v; want %q", got, err, f)
			}
		})
	}
}

func TestTable(t *testing.T) {
	if !slices.Equal(Names(), []string{"raw", "vmdk", "vhd", "qcow2"}) {
		t.Errorf("Names = %v", Names())
	}
	for _, f := range All() {
		if f.Ext() == "" || f.Qemu() == "" || f.MediaType() == "" {
			t.Errorf("%s: incomplete row: ext %q qemu %q media type %q", f, f.Ext(), f.Qemu(), f.MediaType())
		}
	}
	if VHD.Qemu() != "vpc" {
		t.Errorf("VHD's qemu driver = %q", VHD.Qemu())
	}
	if _, err := Parse("iso"); err == nil {
		t.Error("Parse took an unknown format")
	}
	if len(BootOrder()) != len(All()) || BootOrder()[0] != Raw {
		t.Errorf("BootOrder = %v", BootOrder())
	}
}

func TestConvertUnknownFormatWritesNothing(t *testing.T) {
	raw := disktest.MakeRaw(t, 1<<20, 0)
	dst := filepath.Join(t.TempDir(), "disk.iso")
	if err := Convert(context.Background(), raw, dst, "iso", Stamp{}); err == nil {
		t.Fatal("converted to an unknown format")
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("left %s behind", dst)
	}
}
