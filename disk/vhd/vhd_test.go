package vhd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerimg/layerimg/disk/disktest"
)

func TestConvertMatchesQemuImg(t *testing.T) {
	const mib = 1 << 20
	id := [16]byte{1, 2, 3}
	stamp := time.Unix(0, 0)
	for _, tc := range []disktest.Case{
		{Name: "one sector", Size: 512, Offs: []int64{0}},
		{Name: "all zero", Size: 8 * mib, Offs: nil},
		{Name: "holes", Size: 100 * mib, Offs: []int64{0, 5 * mib, 99 * mib}},
		{Name: "not a MiB multiple", Size: 3*mib + 1536, Offs: []int64{3 * mib}},
		{Name: "2040 GiB sparse (the VHD maximum)", Size: MaxSize, Offs: []int64{0, MaxSize - 4096}},
	} {
		t.Run(tc.Name, func(t *testing.T) {
			raw, out := disktest.ConvertCase(t, tc, Writer{ID: id, Created: stamp}, "disk.vhd")
			if err := Check(out); err != nil {
				t.Fatal(err)
			}
			info := disktest.QemuImg(t, "info", "-f", "vpc", out)
			want := Size(tc.Size)
			if !strings.Contains(info, "("+itoa(want)+" bytes)") {
				t.Errorf("virtual size should be %d:\n%s", want, info)
			}
			// The data is the raw disk, padded with zeros to a whole MiB.
			if tc.Size < 1<<30 {
				padded := filepath.Join(t.TempDir(), "padded.raw")
				data, _ := os.ReadFile(raw)
				os.WriteFile(padded, append(data, make([]byte, want-tc.Size)...), 0o644)
				disktest.QemuImg(t, "compare", "-f", "raw", "-F", "vpc", padded, out)
			}
			// Sparse: the file takes no more room than its data and footer.
			var st = statBlocks(t, out)
			if st > int64(len(tc.Offs))*(1<<20)+(64<<10) {
				t.Errorf("vhd occupies %d bytes; holes were filled", st)
			}
		})
	}
}

func TestInPlaceAndCheck(t *testing.T) {
	raw := disktest.MakeRaw(t, 5*(1<<20)+512, 0)
	orig, _ := os.ReadFile(raw)
	if err := AppendInPlace(raw, [16]byte{9}, time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	if err := Check(raw); err != nil {
		t.Fatal(err)
	}
	now, _ := os.ReadFile(raw)
	if !bytes.Equal(now[:len(orig)], orig) || len(now) != 6*(1<<20)+512 {
		t.Errorf("in-place conversion changed the data or size (%d)", len(now))
	}
	if err := AppendInPlace(raw, [16]byte{9}, time.Unix(0, 0)); err == nil {
		t.Error("a second footer was appended")
	}
	// Check rejects what Azure rejects.
	bad := filepath.Join(t.TempDir(), "bad.vhd")
	zeroed := append(append([]byte(nil), now[:len(now)-512]...), make([]byte, 512)...)
	os.WriteFile(bad, zeroed, 0o644)
	if err := Check(bad); err == nil || !strings.Contains(err.Error(), "no VHD footer") {
		t.Errorf("zeroed footer: %v", err)
	}
	corrupt := append([]byte(nil), now...)
	corrupt[len(corrupt)-512+48] ^= 1
	os.WriteFile(bad, corrupt, 0o644)
	if err := Check(bad); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("bad checksum: %v", err)
	}
	os.WriteFile(bad, now[:len(now)-1024], 0o644)
	if err := Check(bad); err == nil || !strings.Contains(err.Error(), "whole number of MiB") {
		t.Errorf("bad size: %v", err)
	}
}

func TestTooLarge(t *testing.T) {
	raw := disktest.MakeRaw(t, MaxSize+1)
	if err := disktest.Convert(context.Background(), raw, raw+".vhd", Writer{Created: time.Unix(0, 0)}); err == nil || !strings.Contains(err.Error(), "2040 GiB") {
		t.Errorf("err = %v", err)
	}
}

func TestGeometry(t *testing.T) {
	// Values from the VHD specification's algorithm, as qemu computes them.
	for _, tc := range []struct {
		sectors int64
		c       uint16
		h, s    uint8
	}{
		{2048, 30, 4, 17},
		{8 << 21, 16644, 16, 63},
		{65535 * 16 * 255 * 2, 65535, 16, 255},
	} {
		c, h, s := geometry(tc.sectors)
		if c != tc.c || h != tc.h || s != tc.s {
			t.Errorf("geometry(%d) = %d/%d/%d, want %d/%d/%d", tc.sectors, c, h, s, tc.c, tc.h, tc.s)
		}
	}
}

func itoa(n int64) string {
	var b []byte
	for n >= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(append([]byte{byte('0' + n)}, b...))
}
