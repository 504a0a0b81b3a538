package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/internal/progress"
)

func newSizeCmd(g *globalFlags) *cobra.Command {
	var asJSON bool
	var top int
	c := &cobra.Command{
		Use:   "size RECIPE",
		Short: "Show what each step adds to the image, largest files first",
		Long: `For the bootstrapped base and each step, read its cached layer (never building)
and show its compressed and uncompressed size, its file count and the largest
files it adds. A step not in the cache is reported as such: build first.`,
		Example: `  layerimg size recipe.yaml
  layerimg size recipe.yaml --top 20
  layerimg size recipe.yaml --json`,
		Args: exactlyOneRecipe,
		RunE: func(cmd *cobra.Command, args []string) error {
			if top < 1 {
				return usageError{fmt.Errorf("--top %d: expected at least 1", top)}
			}
			o, d, err := g.options(cmd)
			if err != nil {
				return err
			}
			defer d.Close()
			r, err := loadRecipe(g, args[0])
			if err != nil {
				return err
			}
			sizes, err := layerimg.Sizes(cmd.Context(), r, o, top)
			if err != nil {
				return fmt.Errorf("sizing %s: %w", args[0], err)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(sizes)
			}
			w := cmd.OutOrStdout()
			for _, s := range sizes {
				if s.Note != "" {
					fmt.Fprintf(w, "%d %s (%s): %s\n\n", s.Index, s.Name, s.Kind, s.Note)
					continue
				}
				fmt.Fprintf(w, "%d %s (%s): %s compressed, %s uncompressed, %d files\n", s.Index, s.Name, s.Kind,
					progress.HumanBytes(s.Size), progress.HumanBytes(s.Uncompressed), s.Files)
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
				for _, p := range s.Largest {
					fmt.Fprintf(tw, "  %s\t  %s\n", progress.HumanBytes(p.Size), p.Path)
				}
				tw.Flush()
				fmt.Fprintln(w)
			}
			return nil
		},
	}
	c.Flags().IntVar(&top, "top", 10, "list the `N` largest files of each step")
	c.Flags().BoolVar(&asJSON, "json", false, "print the sizes as JSON")
	return c
}

// sizeCols is plan's SIZE, UNCOMPRESSED and FILES columns: "-" for a step
// whose layer was not read.
func sizeCols(s layerimg.StepPlan) string {
	if s.Files == 0 {
		return "-\t-\t-"
	}
	return fmt.Sprintf("%s\t%s\t%d", progress.HumanBytes(s.Size), progress.HumanBytes(s.Uncompressed), s.Files)
}
