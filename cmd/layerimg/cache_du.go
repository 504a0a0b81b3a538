package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg/internal/progress"
)

func newCacheDuCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "du",
		Short: "Show how much disk the cache takes",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cache, _, err := g.openCache("measuring", false)
			if err != nil {
				return err
			}
			defer cache.Close()
			u := cache.Usage()
			var total int64
			for _, k := range []string{"blobs", "unpacked", "disks", "keys", "tmp"} {
				fmt.Fprintf(cmd.OutOrStdout(), "%-9s %s\n", k, progress.HumanBytes(u[k]))
				total += u[k]
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%-9s %s\n", "total", progress.HumanBytes(total))
			return nil
		},
	}
}
