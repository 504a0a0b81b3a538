package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg/disk/diskset"
	"github.com/layerimg/layerimg/export/aws"
	"github.com/layerimg/layerimg/layers"
)

func newCacheVerifyCmd(g *globalFlags) *cobra.Command {
	var repair bool
	c := &cobra.Command{
		Use:   "verify",
		Short: "Check everything the cache holds against its recorded digests",
		Long: `Verify checks every key file against its checksum and the layer it names,
every blob against its digest, every unpacked layer against its tree digest,
every cached disk against its content digest, and every publish record
against its checksum. Each bad item is named with the reason.

Builds check what they use as they go and drop what fails; verify checks
the whole cache at once. With --repair it drops the bad items (waiting for
running builds to finish first), so the next build makes them again.`,
		Example: `  layerimg cache verify
  layerimg cache verify --repair`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ok, err := reenterForRootlessTrees(cmd, g); ok {
				return err
			}
			cache, dir, err := g.openCache("verifying", repair)
			if err != nil {
				return err
			}
			defer cache.Close()
			disks, err := diskset.Open(cache, nil)
			if err != nil {
				return fmt.Errorf("opening the disk cache in %s: %w", dir, err)
			}
			parts := []layers.Checker{
				layersPart{cache},
				disks,
				publishRecords{filepath.Join(dir, "publish")},
			}
			checked, bad := 0, 0
			for _, p := range parts {
				n, probs, err := p.Check(cmd.Context(), repair)
				checked += n
				for _, pr := range probs {
					bad++
					what := "kept; cache verify --repair drops it"
					if repair {
						what = "dropped; the next build makes it again"
					}
					fmt.Fprintf(cmd.OutOrStdout(), "corrupt: %s: %s (%s)\n", pr.Item, pr.Why, what)
				}
				if err != nil {
					return fmt.Errorf("verifying cache %s: %w", dir, err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d entries checked, %d corrupt\n", checked, bad)
			switch {
			case bad > 0 && repair:
				return fmt.Errorf("verifying cache %s: %d corrupt items were dropped", dir, bad)
			case bad > 0:
				return fmt.Errorf("verifying cache %s: %d corrupt items (cache verify --repair drops them)", dir, bad)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&repair, "repair", false, "drop the corrupt items")
	return c
}

// layersPart is the layer cache's own part of verify.
type layersPart struct{ c *layers.Cache }

func (l layersPart) Check(ctx context.Context, repair bool) (int, []layers.Problem, error) {
	return l.c.Verify(ctx, repair)
}

// publishRecords are the block-hash records that uploads keep in
// <cache>/publish.
type publishRecords struct{ dir string }

func (p publishRecords) Check(_ context.Context, repair bool) (checked int, bad []layers.Problem, err error) {
	ents, err := os.ReadDir(p.dir)
	if os.IsNotExist(err) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	for _, e := range ents {
		if !aws.IsRecord(e.Name()) {
			continue
		}
		checked++
		path := filepath.Join(p.dir, e.Name())
		if err := aws.CheckRecord(path); err != nil {
			bad = append(bad, layers.Problem{Item: filepath.Join("publish", e.Name()), Why: err.Error()})
			if repair {
				os.Remove(path)
			}
		}
	}
	return checked, bad, nil
}
