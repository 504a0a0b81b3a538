package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg/internal/userns"
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

// reenterForRootlessTrees runs this cache command again inside a rootless
// build's user namespace when the cache holds its lower dirs and this is
// an ordinary user: their files belong to the user's subordinate ids, which
// only root of that namespace may read or remove. ok is false when there
// is no need; otherwise err is the copy's exit status or why it could not
// start.
func reenterForRootlessTrees(cmd *cobra.Command, g *globalFlags) (ok bool, err error) {
	if userns.Inside() || os.Geteuid() == 0 {
		return false, nil
	}
	dir, err := g.cache()
	if err != nil {
		return false, nil
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "unpacked-rootless")); len(ents) == 0 {
		return false, nil
	}
	code, err := userns.Enter(cmd.Context(), userns.Host(), os.Args[1:])
	if err != nil {
		return true, fmt.Errorf("the cache holds rootless builds' layers, which only their user namespace may read: %w", err)
	}
	return true, exitCode(code)
}
