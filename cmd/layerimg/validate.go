package main

import (
	"fmt"

	"github.com/spf13/cobra"
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
