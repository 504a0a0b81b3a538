package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg/internal/progress"
)

func newCacheLsCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List cache entries, least recently used first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cache, dir, err := g.openCache("listing", false)
			if err != nil {
				return err
			}
			defer cache.Close()
			es, used, err := cache.Entries()
			if err != nil {
				return fmt.Errorf("reading cache %s: %w", dir, err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tSTEP\tLAYER\tSIZE\tLAST USED")
			for i, e := range es {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Key[7:19], e.Step, e.Layer.Digest.Hex[:12], progress.HumanBytes(e.Layer.Size), used[i].Format(time.DateTime))
			}
			if err := tw.Flush(); err != nil {
				return fmt.Errorf("printing cache %s: %w", dir, err)
			}
			return nil
		},
	}
}
