package main

import (
	"fmt"
	"regexp"
	"time"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg/disk/qemu"
)

func newBootCmd() *cobra.Command {
	var nvme, secure bool
	var expect string
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "boot DISK",
		Short: "Boot a disk in qemu with UEFI and wait for a console marker",
		Long: `Boot a disk (raw, qcow2, vmdk or vhd) in qemu with OVMF, on a snapshot so the
disk is not changed. Passes when --expect appears on the serial console; fails
on a kernel panic, an initramfs ALERT!, a Secure Boot refusal, the UEFI shell,
or the timeout, printing the end of the console.`,
		Example: `  layerimg boot out/disk.raw
  layerimg boot out/disk.qcow2 --nvme --expect 'Reached target.*Multi-User'
  layerimg boot out/disk.raw --secure-boot`,
		Args: exactlyOne("disk"),
		RunE: func(cmd *cobra.Command, args []string) error {
			re, err := regexp.Compile(expect)
			if err != nil {
				return usageError{fmt.Errorf("--expect: %w", err)}
			}
			start := time.Now()
			err = qemu.Boot(cmd.Context(), qemu.Options{Disk: args[0], NVMe: nvme, SecureBoot: secure, Expect: re, Timeout: timeout, Console: cmd.OutOrStdout()})
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
	f.StringVar(&expect, "expect", "login: ", "regular expression that marks a good boot")
	f.DurationVar(&timeout, "timeout", 300*time.Second, "give up after this long")
	return c
}
