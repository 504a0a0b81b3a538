package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newCacheCmd(g *globalFlags) *cobra.Command {
	c := group(&cobra.Command{
		Use:   "cache",
		Short: "Inspect and tidy the local layer cache",
		Example: `  layerimg cache ls
  layerimg cache du
  layerimg cache prune --keep-days 14
  layerimg cache verify`,
	})
	c.AddCommand(newCacheLsCmd(g), newCacheDuCmd(g), newCachePruneCmd(g), newCacheVerifyCmd(g))
	return c
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
