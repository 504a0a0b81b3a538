package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// A usageError is a command line that cannot be right: an unknown command,
// the wrong number of arguments, an unknown or malformed flag. layerimg exits 2
// on one, having done nothing.
type usageError struct{ error }

// exactlyOne is the Args of a command that takes one argument, a what.
func exactlyOne(what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usageError{fmt.Errorf("expected one %s, got %d arguments", what, len(args))}
		}
		return nil
	}
}

// exactlyOneRecipe is the Args of the commands that take a recipe file.
var exactlyOneRecipe = exactlyOne("recipe file")

// noArgs is the Args of the commands that take no arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("unexpected argument %q: %s takes none", args[0], cmd.CommandPath())}
	}
	return nil
}

// group makes c, a command that only groups others (cache, publish), a usage
// error when run bare or with a subcommand it lacks; cobra would print its
// help and exit 0.
func group(c *cobra.Command) *cobra.Command {
	c.Args = cobra.ArbitraryArgs // so that a misspelt subcommand reaches needSubcommand
	c.RunE = needSubcommand
	// Runnable only to fail, c should not list "layerimg cache [flags]" as a
	// usage; its subcommands inherit the template and still list theirs.
	c.SetUsageTemplate(strings.Replace(c.UsageTemplate(), "{{if .Runnable}}", "{{if and .Runnable (not .HasAvailableSubCommands)}}", 1))
	return c
}

func needSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		var names []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		return usageError{fmt.Errorf("%s needs a subcommand: %s", cmd.CommandPath(), strings.Join(names, ", "))}
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's default, which it sets only on the root
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
	}
	return usageError{errors.New(msg)}
}
