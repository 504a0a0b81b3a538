package main

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/internal/userns"
	"github.com/layerimg/layerimg/recipes"
)

func newBuildCmd(g *globalFlags) *cobra.Command {
	var ociLayout, rootfsTar, manifest, diskDir string
	var sbomFile string
	var formats []string
	var uniqueIDs, digests, rootless bool
	var cacheTo, push, pushDisk, diskArtifact string
	var publish []string
	var platform string
	var provenance, signKey string
	c := &cobra.Command{
		Use:   "build RECIPE",
		Short: "Build a recipe into cached layers and write the outputs",
		Long: `Build a recipe: resolve its base, reuse every cached step, run the others in a
sandbox, run the recipe's tests, and write the outputs. As an ordinary user (or
with --rootless) run steps, tests and the bootstrap run in a user namespace
mapped from /etc/subuid and /etc/subgid, as rootless Podman does; the layers are
the same bytes a root build makes.
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
			// Usage errors first, then the recipe, then (before anything is
			// shown) the move into a user namespace.
			if _, err := parseFormats(formats); err != nil {
				return err
			}
			if _, _, err := g.checkUsage(); err != nil {
				return err
			}
			platforms, err := layerimg.ParsePlatforms(platform)
			if err != nil {
				return usageError{err}
			}
			r, err := loadRecipe(g, args[0])
			if err != nil {
				return err
			}
			if enter, err := needsUserNS(r, rootless); err != nil {
				return err
			} else if enter {
				// The whole build runs again inside, as root of the
				// namespace; this process only waits for it.
				code, err := userns.Enter(cmd.Context(), userns.Host(), os.Args[1:])
				if err != nil {
					return fmt.Errorf("building %s rootless: %w", args[0], err)
				}
				return exitCode(code)
			}
			o, d, err := g.options(cmd)
			if err != nil {
				return err
			}
			defer d.Close()
			if o.Formats, err = parseFormats(formats); err != nil {
				return err
			}
			o.OCILayout, o.RootfsTar, o.Manifest = ociLayout, rootfsTar, manifest
			o.SBOM = sbomFile
			o.DiskDir, o.UniqueIDs = diskDir, uniqueIDs
			o.DiskDigests = manifest != "" || digests
			o.CacheTo, o.Push, o.PushDisk, o.DiskArtifact, o.Publish = cacheTo, push, pushDisk, diskArtifact, publish
			if o.Provenance = provenance; signKey != "" {
				if o.Signer, err = loadSignKey(signKey); err != nil {
					return err
				}
			}
			o.DiskDigests = o.DiskDigests || provenance != "" || signKey != ""
			start := time.Now()
			if len(platforms) > 0 {
				return buildPlatforms(cmd, g, d, o, args[0], platforms, start)
			}
			res, err := layerimg.Build(cmd.Context(), r, o)
			reportResult(d, start, cmd.Context().Err() != nil, o, res, err)
			if err != nil {
				return fmt.Errorf("building %s: %w", args[0], err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), res.Image)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&ociLayout, "oci-layout", "", "write the image as an OCI layout to `DIR`")
	f.StringVar(&rootfsTar, "rootfs-tar", "", "write the flattened rootfs to `FILE` as one tar")
	f.StringVar(&manifest, "manifest", "", "write the build manifest (JSON) to `FILE`")
	f.StringVar(&sbomFile, "sbom", "", "write the image's SBOM (SPDX 2.3 JSON: dpkg packages, base and layers) to `FILE`")
	f.StringVarP(&diskDir, "output", "o", "", "write disks to `DIR` (disk.raw, disk.vmdk, ...)")
	f.StringSliceVar(&formats, "format", nil, "disk formats, overriding the recipe's outputs: raw, vmdk, vhd, qcow2")
	f.StringVar(&cacheTo, "cache-to", "", "write every step's layer (and the finished disks) to this registry cache `REF`")
	f.StringVar(&push, "push", "", "push the image to `REF` (runnable as a container)")
	f.StringVar(&pushDisk, "push-disk", "", "push the disk to `REF` as a KubeVirt containerDisk (qcow2 at /disk/)")
	f.StringVar(&diskArtifact, "disk-artifact", "", "push the disk files to `REF` as an OCI artifact")
	f.StringSliceVar(&publish, "publish", nil, "publish the disk with the recipe's publish section: aws, azure, vsphere")
	f.StringVar(&platform, "platform", "", "build for these `PLATFORMS` (linux/amd64,linux/arm64) in place of the recipe's platform; several are built in turn, each into DIR/linux-ARCH, and --push writes an image index")
	f.StringVar(&provenance, "provenance", "", "write the SLSA v1 provenance (an in-toto statement) to `FILE`")
	f.StringVar(&signKey, "sign-key", "", "sign what is pushed and written with this cosign private key `FILE` (password in $COSIGN_PASSWORD)")
	f.BoolVar(&digests, "sha256", false, "compute each disk's sha256 (always with --manifest)")
	f.BoolVar(&rootless, "rootless", false, "run steps, tests and the bootstrap in a user namespace even as root (as an ordinary user they always do)")
	f.BoolVar(&uniqueIDs, "unique-ids", false, "random disk and filesystem ids instead of ones derived from the image (not cached)")
	return c
}

// needsUserNS says whether this build must run again inside a user
// namespace: when asked to (--rootless), or when an ordinary user's recipe
// has something to run in the sandbox. A recipe of copy and env steps
// needs no privilege at all, and no subordinate range either.
func needsUserNS(r *recipes.Recipe, rootless bool) (bool, error) {
	if userns.Inside() {
		return false, nil
	}
	if rootless {
		return true, nil
	}
	if os.Geteuid() == 0 {
		return false, nil
	}
	for _, st := range r.Steps {
		if st.Kind() == "run" {
			return true, nil
		}
	}
	for _, t := range r.Tests {
		if t.Boot == nil {
			return true, nil
		}
	}
	return false, nil
}

// exitCode is the exit status of the copy of layerimg that built inside
// the user namespace: it has printed its own errors.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// parseFormats checks --format; its error is a usage error naming the flag.
func parseFormats(fs []string) ([]string, error) {
	for _, f := range fs {
		if !slices.Contains(format.Names(), f) {
			return nil, usageError{fmt.Errorf("--format %q: expected raw, vmdk, vhd or qcow2", f)}
		}
	}
	return fs, nil
}
