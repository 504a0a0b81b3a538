package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg/layers"
)

func newCacheLsCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List cache entries, least recently used first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := g.cache()
			if err != nil {
				return fmt.Errorf("listing the cache: %w", err)
			}
			cache, err := layers.OpenCache(dir, false, nil)
			if err != nil {
				return fmt.Errorf("opening cache %s: %w", dir, err)
			}
			defer cache.Close()
			es, used, err := cache.Entries()
			if err != nil {
				return fmt.Errorf("reading cache %s: %w", dir, err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tSTEP\tLAYER\tSIZE\tLAST USED")
			for i, e := range es {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Key[7:19], e.Step, e.Layer.Digest.Hex[:12], humanBytes(e.Layer.Size), used[i].Format(time.DateTime))
			}
			if err := tw.Flush(); err != nil {
				return fmt.Errorf("printing cache %s: %w", dir, err)
			}
			return nil
		},
	}
}
