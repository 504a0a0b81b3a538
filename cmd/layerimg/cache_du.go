package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg/layers"
)

func newCacheDuCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "du",
		Short: "Show how much disk the cache takes",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := g.cache()
			if err != nil {
				return fmt.Errorf("measuring the cache: %w", err)
			}
			cache, err := layers.OpenCache(dir, false, nil)
			if err != nil {
				return fmt.Errorf("opening cache %s: %w", dir, err)
			}
			defer cache.Close()
			u := cache.Usage()
			var total int64
			for _, k := range []string{"blobs", "unpacked", "disks", "keys", "tmp"} {
				fmt.Fprintf(cmd.OutOrStdout(), "%-9s %s\n", k, humanBytes(u[k]))
				total += u[k]
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%-9s %s\n", "total", humanBytes(total))
			return nil
		},
	}
}
