package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg"
)

// exitOutdated is outdated's status when updates are pending.
const exitOutdated = 3

func newOutdatedCmd(g *globalFlags) *cobra.Command {
	var asJSON bool
	var keyrings []string
	var image string
	c := &cobra.Command{
		Use:   "outdated RECIPE",
		Short: "List the pending updates of a built Debian image, security first",
		Long: `Read the packages of the recipe's last build from the cache (its final image,
or its bootstrap base when the steps are no longer cached; or --image) and compare them
with what the base's suites publish now, without building anything.

Exit status: 0 when nothing is pending, 3 when updates are pending, 1 on
error. Each InRelease's signature is checked with --keyring (default: the
host's ` + layerimg.DefaultKeyring + `), and each Packages index with
the InRelease's SHA256.`,
		Example: `  layerimg outdated recipe.yaml
  layerimg outdated recipe.yaml --json
  layerimg outdated recipe.yaml --image ghcr.io/org/golden:latest
  layerimg outdated recipe.yaml || [ $? -eq 3 ] && layerimg build recipe.yaml`,
		Args: exactlyOneRecipe,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, d, err := g.options(cmd)
			if err != nil {
				return err
			}
			defer d.Close()
			r, err := loadRecipe(g, args[0])
			if err != nil {
				return err
			}
			rep, err := layerimg.Outdated(cmd.Context(), r, o, layerimg.OutdatedOptions{Keyrings: keyrings, Image: image})
			if err != nil {
				return fmt.Errorf("checking %s for updates: %w", args[0], err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				for _, s := range rep.Sources {
					state := "unchanged since the build"
					if s.Built != "" && s.Built != s.InRelease {
						state = "changed since the build"
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "%s %s: InRelease %s, %s\n", s.Archive, s.Suite, s.InRelease[7:19], state)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "verified: %s\n", rep.Verified)
				fmt.Fprintf(out, "%s (%s %s, %d packages): %d updates pending, %d from security\n",
					rep.Recipe, rep.Image, rep.Key[7:19], rep.Installed, len(rep.Updates), rep.Security())
				if len(rep.Updates) > 0 {
					tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "PACKAGE\tINSTALLED\tCANDIDATE\tSUITE\tSECURITY")
					for _, u := range rep.Updates {
						sec := "-"
						if u.Security {
							sec = "yes"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Name, u.Installed, u.Candidate, u.Suite, sec)
					}
					tw.Flush()
				}
			}
			if len(rep.Updates) > 0 {
				return exitCode(exitOutdated)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	c.Flags().StringVar(&image, "image", "", "read this image (registry reference or oci-layout:DIR) instead of the cache's last build")
	c.Flags().StringArrayVar(&keyrings, "keyring", nil, "an OpenPGP keyring (.gpg or .asc) to check InRelease signatures with (repeatable)")
	return c
}
