package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/recipes"
)

func newPlanCmd(g *globalFlags) *cobra.Command {
	var asJSON, explain bool
	var platform string
	c := &cobra.Command{
		Use:   "plan RECIPE",
		Short: "Show each step's cache key and whether it will run",
		Long: `Compute every step's cache key and look it up, without running anything.
A MISS says why: which input changed since the last build of this recipe.
--explain adds the checks each step will get (check_idempotent: it runs
twice and fails if the second run changes anything).`,
		Example: `  layerimg plan recipe.yaml
  layerimg plan recipe.yaml --cache-from ghcr.io/org/cache:main
  layerimg plan recipe.yaml --platform linux/arm64
  layerimg plan recipe.yaml --explain
  layerimg plan recipe.yaml --json`,
		Args: exactlyOneRecipe,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, d, err := g.options(cmd)
			if err != nil {
				return err
			}
			defer d.Close()
			load := loadRecipe
			if platform != "" {
				load = func(g *globalFlags, path string) (*recipes.Recipe, error) { return loadRecipeFor(g, path, platform) }
			}
			r, err := load(g, args[0])
			if err != nil {
				return err
			}
			plan, err := layerimg.Plan(cmd.Context(), r, o)
			if err != nil {
				return fmt.Errorf("planning %s: %w", args[0], err)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(plan); err != nil {
					return fmt.Errorf("printing the plan: %w", err)
				}
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			if explain {
				fmt.Fprintln(tw, "#\tSTEP\tKIND\tKEY\tSTATUS\tCHECKS\tSIZE\tUNCOMPRESSED\tFILES\tWHY")
			} else {
				fmt.Fprintln(tw, "#\tSTEP\tKIND\tKEY\tSTATUS\tSIZE\tUNCOMPRESSED\tFILES\tWHY")
			}
			for _, s := range plan {
				key := "-"
				if s.Key != "" {
					key = s.Key[7:19]
				}
				if explain {
					checks := "-"
					if s.CheckIdempotent {
						checks = "idempotent (runs twice)"
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Index, s.Name, s.Kind, key, s.Status, checks, sizeCols(s), s.Why)
					continue
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Index, s.Name, s.Kind, key, s.Status, sizeCols(s), s.Why)
			}
			if err := tw.Flush(); err != nil {
				return fmt.Errorf("printing the plan: %w", err)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	c.Flags().StringVar(&platform, "platform", "", "plan for this `PLATFORM` (linux/arm64) in place of the recipe's; one, as each platform's steps have their own keys")
	c.Flags().BoolVar(&explain, "explain", false, "also show each step's checks (check_idempotent)")
	return c
}
