// Command layerimg builds VM images from recipes, the way containers are built.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/internal/userns"
	"github.com/layerimg/layerimg/recipes"
	"github.com/layerimg/layerimg/rootfs"
)

func main() {
	rootfs.SandboxMain() // a re-executed sandbox child never returns
	userns.Main()        // a rootless build's copy waits here for its id maps
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	if _, _, ferr := root.Find(args); ferr != nil {
		// Cobra reports a first word that names no command while looking the
		// command up, as a plain error: it is a usage error all the same.
		err = usageError{err}
	}
	var ec exitCode
	if errors.As(err, &ec) {
		return int(ec) // the copy in the user namespace said what it had to
	}
	fmt.Fprintln(os.Stderr, "layerimg:", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "layerimg: interrupted; nothing partial was kept")
		return 130
	}
	return 1
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "layerimg",
		Short: "Build VM images the way containers are built",
		Long: `layerimg builds machine images from a recipe: a base and an ordered list of
steps. Every step's result is an OCI layer cached under a content-addressed key,
so a rebuild runs only the steps whose inputs changed.`,
		Example: `  layerimg validate recipe.yaml
  layerimg plan recipe.yaml
  layerimg build recipe.yaml --oci-layout out/image --rootfs-tar out/rootfs.tar
  layerimg cache ls`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	g.register(root)
	root.AddCommand(newValidateCmd(g), newPlanCmd(g), newSizeCmd(g), newBuildCmd(g), newCacheCmd(g), newDiskCmd(g), newConvertCmd(), newBootCmd(), newPublishCmd(g), newIndexCmd(g), newVerifyCmd(g), newOutdatedCmd(g))
	// Cobra adds its completion command when it executes; made now, its
	// misuse (layerimg completion, completion bash extra) exits 2 as well.
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			group(c)
			for _, shell := range c.Commands() {
				shell.Args = noArgs
			}
		}
	}
	return root
}

// loadRecipe reads the recipe at path with the --arg overrides. Commands
// return its errors as they are: a usage error names --arg, and a recipe's
// problems are file:line:column: message lines, as validate promises.
func loadRecipe(g *globalFlags, path string) (*recipes.Recipe, error) {
	args, err := g.argMap()
	if err != nil {
		return nil, err
	}
	return recipes.Load(path, args)
}

// loadRecipeFor is loadRecipe for one platform in place of the recipe's
// (TARGETARCH follows it unless --arg sets it).
func loadRecipeFor(g *globalFlags, path, platform string) (*recipes.Recipe, error) {
	ps, err := layerimg.ParsePlatforms(platform)
	if err != nil {
		return nil, usageError{err}
	}
	if len(ps) != 1 {
		return nil, usageError{fmt.Errorf("--platform %q: name one platform here", platform)}
	}
	args, err := g.argMap()
	if err != nil {
		return nil, err
	}
	return layerimg.LoadRecipe(path, args, ps[0])
}
