package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/layers"
)

// buildPlatforms is build --platform: the recipe once per platform. It
// prints each platform's image digest, and the index's when --push made
// one.
func buildPlatforms(cmd *cobra.Command, g *globalFlags, d display, o layerimg.Options, path string, platforms []string, start time.Time) error {
	args, err := g.argMap()
	if err != nil {
		return err
	}
	results, index, err := layerimg.BuildPlatforms(cmd.Context(), path, args, platforms, o)
	var last *layerimg.Result
	if n := len(results); n > 0 {
		last = results[n-1].Result
	}
	reportResult(d, start, cmd.Context().Err() != nil, o, last, err)
	if err != nil {
		return fmt.Errorf("building %s: %w", path, err)
	}
	if len(results) == 1 {
		fmt.Fprintln(cmd.OutOrStdout(), results[0].Image)
		return nil
	}
	for _, r := range results {
		fmt.Fprintln(cmd.OutOrStdout(), r.Platform, r.Image)
	}
	if index != "" {
		fmt.Fprintln(cmd.OutOrStdout(), "index", index)
	}
	return nil
}

func newIndexCmd(g *globalFlags) *cobra.Command {
	var from []string
	c := &cobra.Command{
		Use:   "index REF --from REF-amd64 --from REF-arm64",
		Short: "Push an image index of images built on separate runners",
		Long: `Push to REF an OCI image index holding every platform's image from the --from
images: each one a single-platform image (its config names its platform) or an
index. Images in another repository are copied into REF's. Two images for the
same platform are refused. Prints the index's digest.`,
		Example: `  layerimg index ghcr.io/org/golden:1.4 --from ghcr.io/org/golden:1.4-amd64 --from ghcr.io/org/golden:1.4-arm64`,
		Args:    exactlyOne("image reference to push the index to"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(from) == 0 {
				return usageError{fmt.Errorf("index %s: name the images to merge with --from REF (repeatable)", args[0])}
			}
			o, d, err := g.options(cmd)
			if err != nil {
				return err
			}
			defer d.Close()
			digest, err := layerimg.PushIndex(cmd.Context(), args[0], from, layers.Registry{Insecure: o.InsecureRegistries, Log: o.Log})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), digest)
			return nil
		},
	}
	c.Flags().StringArrayVar(&from, "from", nil, "an image or index to take platforms from, as `REF` (repeatable)")
	return c
}
