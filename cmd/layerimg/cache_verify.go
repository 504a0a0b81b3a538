package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newCacheVerifyCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Check every cached layer against its digest; drop corrupt ones",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cache, dir, err := g.openCache("verifying", false)
			if err != nil {
				return err
			}
			defer cache.Close()
			es, _, err := cache.Entries()
			if err != nil {
				return fmt.Errorf("reading cache %s: %w", dir, err)
			}
			bad := 0
			for _, e := range es {
				if ok, _ := cache.Lookup(e.Key); ok == nil {
					bad++
					fmt.Fprintf(cmd.OutOrStdout(), "corrupt: step %s key %s layer %s (dropped; the next build remakes it)\n", e.Step, e.Key, e.Layer.Digest)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d entries checked, %d corrupt\n", len(es), bad)
			if bad > 0 {
				return fmt.Errorf("verifying cache %s: %d corrupt cache entries were dropped", dir, bad)
			}
			return nil
		},
	}
}
