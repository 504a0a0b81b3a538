package main

import (
	"fmt"

	"github.com/spf13/cobra"
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
				fmt.Fprintf(cmd.OutOrStdout(), "%-9s %s\n", k, humanBytes(u[k]))
				total += u[k]
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%-9s %s\n", "total", humanBytes(total))
			return nil
		},
	}
}
