package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg/layers"
)

func newCacheVerifyCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Check every cached layer against its digest; drop corrupt ones",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := g.cache()
			if err != nil {
				return fmt.Errorf("verifying the cache: %w", err)
			}
			cache, err := layers.OpenCache(dir, false, nil)
			if err != nil {
				return fmt.Errorf("opening cache %s: %w", dir, err)
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
