package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/recipes"
)

func newDiskCmd(g *globalFlags) *cobra.Command {
	var out, size, boot, cmdline, espSize string
	var formats []string
	var unique, digests bool
	var sbomFile string
	c := &cobra.Command{
		Use:   "disk SOURCE",
		Short: "Make bootable disks from an image or a rootfs tar",
		Long: `Make disks from an existing image: a registry reference, oci-layout:DIR[:tag],
docker-archive:FILE, or a flattened rootfs .tar. The image's layers are
streamed into the disk's filesystems, never unpacked: no root is needed.`,
		Example: `  layerimg disk oci-layout:out/image -o out/ --format vmdk,vhd
  layerimg disk out/rootfs.tar -o out/ --boot grub --size 8GiB`,
		Args: exactlyOne("image or rootfs tar"),
		RunE: func(cmd *cobra.Command, args []string) error {
			fs, err := parseFormats(formats)
			if err != nil {
				return err
			}
			d := recipes.Disk{Size: size, Boot: boot, KernelCmdline: cmdline, ESPSize: espSize}
			if err := checkDiskFlags(d); err != nil {
				return err
			}
			o, disp, err := g.options(cmd)
			if err != nil {
				return err
			}
			defer disp.Close()
			o.DiskDigests, o.SBOM = digests, sbomFile
			res, err := layerimg.DiskFromSource(cmd.Context(), args[0], d, fs, out, unique, o)
			if err != nil {
				return fmt.Errorf("making disks from %s: %w", args[0], err)
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
	f.StringVar(&sbomFile, "sbom", "", "write the image's SBOM (SPDX 2.3 JSON) to `FILE`")
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
