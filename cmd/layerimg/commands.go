package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/layers"
)

func newValidateCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "validate RECIPE",
		Short: "Check a recipe without building anything",
		Long: `Parse and check a recipe. Every problem is reported as file:line:column: message,
and the command exits 1 if there is any.`,
		Example: `  layerimg validate recipe.yaml
  layerimg validate recipe.yaml --arg SUITE=trixie`,
		Args: exactlyOneRecipe,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := loadRecipe(g, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d steps, %d tests)\n", args[0], len(r.Steps), len(r.Tests))
			return nil
		},
	}
}

func newPlanCmd(g *globalFlags) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "plan RECIPE",
		Short: "Show each step's cache key and whether it will run",
		Long: `Compute every step's cache key and look it up, without running anything.
A MISS says why: which input changed since the last build of this recipe.`,
		Example: `  layerimg plan recipe.yaml
  layerimg plan recipe.yaml --cache-from ghcr.io/org/cache:main
  layerimg plan recipe.yaml --json`,
		Args: exactlyOneRecipe,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := loadRecipe(g, args[0])
			if err != nil {
				return err
			}
			o, err := g.options(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			plan, err := layerimg.Plan(cmd.Context(), r, o)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(plan)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "#\tSTEP\tKIND\tKEY\tSTATUS\tWHY")
			for _, s := range plan {
				key := "-"
				if s.Key != "" {
					key = s.Key[7:19]
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", s.Index, s.Name, s.Kind, key, s.Status, s.Why)
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	return c
}

func newBuildCmd(g *globalFlags) *cobra.Command {
	var ociLayout, rootfsTar, manifest, diskDir string
	var formats []string
	var uniqueIDs, digests bool
	var cacheTo, push, pushDisk, diskArtifact string
	var publish []string
	c := &cobra.Command{
		Use:   "build RECIPE",
		Short: "Build a recipe into cached layers and write the outputs",
		Long: `Build a recipe: resolve its base, reuse every cached step, run the others in a
sandbox (run steps need root), run the recipe's tests, and write the outputs.
Step output is prefixed with the step's name. Set SOURCE_DATE_EPOCH to stamp a
time other than 1970-01-01 on what is made.`,
		Example: `  layerimg build recipe.yaml -o out/          # disks as the recipe's outputs say
  layerimg build recipe.yaml -o out/ --cache-from ghcr.io/org/cache:main --cache-to ghcr.io/org/cache:pr-12 \
      --push ghcr.io/org/golden:1.4 --push-disk ghcr.io/org/golden-disk:1.4
  layerimg build recipe.yaml --oci-layout out/image --rootfs-tar out/rootfs.tar
  layerimg build recipe.yaml --arg SUITE=trixie --manifest out/build.json
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) layerimg build recipe.yaml`,
		Args: exactlyOneRecipe,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := loadRecipe(g, args[0])
			if err != nil {
				return err
			}
			o, err := g.options(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			o.OCILayout, o.RootfsTar, o.Manifest = ociLayout, rootfsTar, manifest
			o.DiskDir, o.UniqueIDs = diskDir, uniqueIDs
			o.DiskDigests = manifest != "" || digests
			o.CacheTo, o.Push, o.PushDisk, o.DiskArtifact, o.Publish = cacheTo, push, pushDisk, diskArtifact, publish
			if o.Formats, err = parseFormats(formats); err != nil {
				return err
			}
			start := time.Now()
			res, err := layerimg.Build(cmd.Context(), r, o)
			if err != nil {
				return err
			}
			o.Log.Info("built", "recipe", r.Name, "image", res.Image, "executed", res.Executed, "elapsed", time.Since(start).Round(time.Millisecond))
			fmt.Fprintln(cmd.OutOrStdout(), res.Image)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&ociLayout, "oci-layout", "", "write the image as an OCI layout to `DIR`")
	f.StringVar(&rootfsTar, "rootfs-tar", "", "write the flattened rootfs to `FILE` (needs root)")
	f.StringVar(&manifest, "manifest", "", "write the build manifest (JSON) to `FILE`")
	f.StringVarP(&diskDir, "output", "o", "", "write disks to `DIR` (disk.raw, disk.vmdk, ...)")
	f.StringSliceVar(&formats, "format", nil, "disk formats, overriding the recipe's outputs: raw, vmdk, vhd, qcow2")
	f.StringVar(&cacheTo, "cache-to", "", "write every step's layer (and the finished disks) to this registry cache `REF`")
	f.StringVar(&push, "push", "", "push the image to `REF` (runnable as a container)")
	f.StringVar(&pushDisk, "push-disk", "", "push the disk to `REF` as a KubeVirt containerDisk (qcow2 at /disk/)")
	f.StringVar(&diskArtifact, "disk-artifact", "", "push the disk files to `REF` as an OCI artifact")
	f.StringSliceVar(&publish, "publish", nil, "publish the disk with the recipe's publish section: aws, azure, vsphere")
	f.BoolVar(&digests, "sha256", false, "compute each disk's sha256 (always with --manifest)")
	f.BoolVar(&uniqueIDs, "unique-ids", false, "random disk and filesystem ids instead of ones derived from the image (not cached)")
	return c
}

func parseFormats(fs []string) ([]string, error) {
	for _, f := range fs {
		if !slices.Contains(format.Names(), f) {
			return nil, usageError{fmt.Errorf("--format %q: expected raw, vmdk, vhd or qcow2", f)}
		}
	}
	return fs, nil
}

func newCacheCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{
		Use:   "cache",
		Short: "Inspect and tidy the local layer cache",
		Example: `  layerimg cache ls
  layerimg cache du
  layerimg cache prune --keep-days 14
  layerimg cache verify`,
	}
	open := func(exclusive bool) (*layers.Cache, error) {
		dir, err := g.cache()
		if err != nil {
			return nil, err
		}
		return layers.OpenCache(dir, exclusive, nil)
	}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List cache entries, least recently used first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cache, err := open(false)
			if err != nil {
				return err
			}
			defer cache.Close()
			es, used, err := cache.Entries()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tSTEP\tLAYER\tSIZE\tLAST USED")
			for i, e := range es {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Key[7:19], e.Step, e.Layer.Digest.Hex[:12], humanBytes(e.Layer.Size), used[i].Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	du := &cobra.Command{
		Use:   "du",
		Short: "Show how much disk the cache takes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cache, err := open(false)
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
	var keepDays int
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Drop entries unused for --keep-days, and every blob nothing needs",
		Long:  "Prune waits for running builds to finish, then removes what they no longer need.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keepDays < 0 {
				return usageError{fmt.Errorf("--keep-days must be 0 or more")}
			}
			cache, err := open(true)
			if err != nil {
				return err
			}
			defer cache.Close()
			n, freed, err := cache.Prune(keepDays, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %d entries, freed %s\n", n, humanBytes(freed))
			return nil
		},
	}
	prune.Flags().IntVar(&keepDays, "keep-days", 7, "keep entries used within this many days (0 drops every entry)")
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check every cached layer against its digest; drop corrupt ones",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cache, err := open(false)
			if err != nil {
				return err
			}
			defer cache.Close()
			es, _, err := cache.Entries()
			if err != nil {
				return err
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
				return fmt.Errorf("%d corrupt cache entries were dropped", bad)
			}
			return nil
		},
	}
	c.AddCommand(ls, du, prune, verify)
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
