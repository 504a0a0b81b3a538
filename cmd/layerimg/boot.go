package main

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg/disk"
	"github.com/layerimg/layerimg/disk/qemu"
)

func newBootCmd() *cobra.Command {
	var nvme, secure bool
	var expect, arch string
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "boot DISK",
		Short: "Boot a disk in qemu with UEFI and wait for a console marker",
		Long: `Boot a disk (raw, qcow2, vmdk or vhd) in qemu with OVMF, on a snapshot so the
disk is not changed. An arm64 disk (told by its GPT root partition's type, or
--arch) boots in qemu-system-aarch64's virt machine with AAVMF, its console on
the PL011. Passes when --expect appears on the serial console; fails
on a kernel panic, an initramfs ALERT!, a Secure Boot refusal, the UEFI shell,
or the timeout, printing the end of the console.`,
		Example: `  layerimg boot out/disk.raw
  layerimg boot out/disk.qcow2 --nvme --expect 'Reached target.*Multi-User'
  layerimg boot out/disk.raw --secure-boot
  layerimg boot out-arm64/disk.qcow2 --timeout 15m`,
		Args: exactlyOne("disk"),
		RunE: func(cmd *cobra.Command, args []string) error {
			re, err := regexp.Compile(expect)
			if err != nil {
				return usageError{fmt.Errorf("--expect: %w", err)}
			}
			if arch != "" && !slices.Contains(disk.Arches(), arch) {
				return usageError{fmt.Errorf("--arch %q: expected one of %s", arch, strings.Join(disk.Arches(), ", "))}
			}
			if _, err := os.Stat(args[0]); err != nil {
				return fmt.Errorf("booting %s: %w", args[0], err)
			}
			if arch == "" {
				if arch, err = disk.ArchOf(cmd.Context(), args[0]); err != nil {
					// A disk made elsewhere: boot it as before, on amd64.
					fmt.Fprintf(cmd.ErrOrStderr(), "layerimg: %v; booting it as amd64 (--arch arm64 to change that)\n", err)
					arch = disk.AMD64
				}
			}
			start := time.Now()
			err = qemu.Boot(cmd.Context(), qemu.Options{Disk: args[0], NVMe: nvme, SecureBoot: secure, Expect: re, Timeout: timeout, Console: cmd.OutOrStdout(), Arch: arch})
			if err != nil {
				return fmt.Errorf("booting %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "\nlayerimg: booted: %q seen after %s\n", expect, time.Since(start).Round(time.Second))
			return nil
		},
	}
	f := c.Flags()
	f.BoolVar(&nvme, "nvme", false, "attach the disk as NVMe instead of virtio-blk")
	f.BoolVar(&secure, "secure-boot", false, "OVMF with Microsoft's keys and Secure Boot on")
	f.StringVar(&arch, "arch", "", "the disk's architecture, amd64 or arm64 (default: from its root partition's type)")
	f.StringVar(&expect, "expect", "login: ", "regular expression that marks a good boot")
	f.DurationVar(&timeout, "timeout", 300*time.Second, "give up after this long")
	return c
}
