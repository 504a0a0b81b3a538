package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/disk/format"
)

func newConvertCmd() *cobra.Command {
	var to, out string
	var inPlace bool
	c := &cobra.Command{
		Use:   "convert RAW --to vmdk|vhd|qcow2",
		Short: "Convert a raw disk to VMDK (streamOptimized), VHD (fixed) or qcow2",
		Example: `  layerimg convert out/disk.raw --to vmdk
  layerimg convert out/disk.raw --to vhd --in-place`,
		Args: exactlyOne("raw disk"),
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
