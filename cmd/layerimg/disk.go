package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/disk/qemu"
	"github.com/layerimg/layerimg/recipes"
)

func newDiskCmd(g *globalFlags) *cobra.Command {
	var out, size, boot, cmdline, espSize string
	var formats []string
	var unique, digests bool
	c := &cobra.Command{
		Use:   "disk SOURCE",
		Short: "Make bootable disks from an image or a rootfs tar",
		Long: `Make disks from an existing image: a registry reference, oci-layout:DIR[:tag],
docker-archive:FILE, or a flattened rootfs .tar. Needs root.`,
		Example: `  layerimg disk oci-layout:out/image -o out/ --format vmdk,vhd
  layerimg disk out/rootfs.tar -o out/ --boot grub --size 8GiB`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("expected one image or rootfs tar, got %d arguments", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			fs, err := parseFormats(formats)
			if err != nil {
				return err
			}
			d := recipes.Disk{Size: size, Boot: boot, KernelCmdline: cmdline, ESPSize: espSize}
			if err := checkDiskFlags(d); err != nil {
				return err
			}
			o, err := g.options(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			o.DiskDigests = digests
			res, err := layerimg.DiskFromSource(cmd.Context(), args[0], d, fs, out, unique, o)
			if err != nil {
				return err
			}
			for _, f := range fs {
				if digests {
					fmt.Fprintf(cmd.OutOrStdout(), "%s  %s\n", res.Files[f].SHA256, res.Files[f].Path)
				} else {
					fmt.Fprintln(cmd.OutOrStdout(), res.Files[f].Path)
				}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVarP(&out, "output", "o", ".", "write disks to `DIR`")
	f.StringSliceVar(&formats, "format", []string{"raw"}, "disk formats: raw, vmdk, vhd, qcow2")
	f.StringVar(&size, "size", "auto", "disk size, such as 8GiB, or auto")
	f.StringVar(&boot, "boot", "", "boot mode: systemd-boot, grub or none (default: detected)")
	f.StringVar(&cmdline, "kernel-cmdline", "", "extra kernel command line")
	f.StringVar(&espSize, "esp-size", "", "EFI system partition size (default 256MiB)")
	f.BoolVar(&unique, "unique-ids", false, "random ids instead of ones derived from the image")
	f.BoolVar(&digests, "sha256", false, "print each disk's sha256")
	return c
}

// checkDiskFlags validates flags as the recipe parser validates a disk section.
func checkDiskFlags(d recipes.Disk) error {
	if d.Size != "auto" {
		if _, err := recipes.ParseSize(d.Size); err != nil {
			return usageError{fmt.Errorf("--size: %w", err)}
		}
	}
	if d.Boot != "" && d.Boot != "systemd-boot" && d.Boot != "grub" && d.Boot != "none" {
		return usageError{fmt.Errorf("--boot %q: expected systemd-boot, grub or none", d.Boot)}
	}
	if d.ESPSize != "" {
		if n, err := recipes.ParseSize(d.ESPSize); err != nil || n < 256<<20 {
			return usageError{fmt.Errorf("--esp-size %q: expected at least 256MiB", d.ESPSize)}
		}
	}
	return nil
}

func newConvertCmd() *cobra.Command {
	var to, out string
	var inPlace bool
	c := &cobra.Command{
		Use:   "convert RAW --to vmdk|vhd|qcow2",
		Short: "Convert a raw disk to VMDK (streamOptimized), VHD (fixed) or qcow2",
		Example: `  layerimg convert out/disk.raw --to vmdk
  layerimg convert out/disk.raw --to vhd --in-place`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("expected one raw disk, got %d arguments", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := format.Parse(to)
			if err != nil || f == format.Raw {
				return usageError{fmt.Errorf("--to %q: expected vmdk, vhd or qcow2", to)}
			}
			if out == "" {
				out = strings.TrimSuffix(args[0], filepath.Ext(args[0])) + "." + f.Ext()
			}
			start := time.Now()
			if err := layerimg.Convert(cmd.Context(), args[0], to, out, inPlace); err != nil {
				return fmt.Errorf("converting %s: %w", args[0], err)
			}
			if inPlace {
				out = args[0]
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s (%s)\n", out, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "target format: vmdk, vhd or qcow2")
	c.Flags().StringVarP(&out, "output", "o", "", "output `FILE` (default: the input's name with the new extension)")
	c.Flags().BoolVar(&inPlace, "in-place", false, "vhd only: append the footer to the raw file itself, with no copy")
	return c
}

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
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("expected one disk, got %d arguments", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			re, err := regexp.Compile(expect)
			if err != nil {
				return usageError{fmt.Errorf("--expect: %w", err)}
			}
			start := time.Now()
			err = qemu.Boot(cmd.Context(), qemu.Options{Disk: args[0], NVMe: nvme, SecureBoot: secure, Expect: re, Timeout: timeout, Console: cmd.OutOrStdout()})
			if err != nil {
				return err
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
