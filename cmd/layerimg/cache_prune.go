package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg/internal/progress"
)

func newCachePruneCmd(g *globalFlags) *cobra.Command {
	var keepDays int
	c := &cobra.Command{
		Use:   "prune",
		Short: "Drop entries unused for --keep-days, and every blob nothing needs",
		Long:  "Prune waits for running builds to finish, then removes what they no longer need.",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keepDays < 0 {
				return usageError{fmt.Errorf("--keep-days must be 0 or more")}
			}
			if ok, err := reenterForRootlessTrees(cmd, g); ok {
				return err
			}
			cache, dir, err := g.openCache("pruning", true)
			if err != nil {
				return err
			}
			defer cache.Close()
			n, freed, err := cache.Prune(keepDays, nil)
			if err != nil {
				return fmt.Errorf("pruning cache %s: %w", dir, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %d entries, freed %s\n", n, progress.HumanBytes(freed))
			return nil
		},
	}
	c.Flags().IntVar(&keepDays, "keep-days", 7, "keep entries used within this many days (0 drops every entry)")
	return c
}
