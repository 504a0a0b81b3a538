package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/layers"
)

type globalFlags struct {
	cacheDir    string
	args        []string
	insecure    []string
	cacheFrom   []string
	compression string
	progress    string
	verbose     bool
}

func (g *globalFlags) register(c *cobra.Command) {
	f := c.PersistentFlags()
	f.StringVar(&g.cacheDir, "cache-dir", "", "layer cache directory (default $XDG_CACHE_HOME/layerimg)")
	f.StringArrayVar(&g.args, "arg", nil, "override a recipe arg, as `NAME=VALUE` (repeatable)")
	f.StringArrayVar(&g.insecure, "insecure-registry", nil, "allow plain HTTP or an untrusted certificate for this registry `HOST` only (repeatable)")
	f.StringArrayVar(&g.cacheFrom, "cache-from", nil, "consult this registry cache `REF` before running a step (repeatable, in order)")
	f.StringVar(&g.compression, "compression", "gzip", "layer compression: gzip or zstd")
	f.StringVar(&g.progress, "progress", "auto", "progress output: auto, plain, tty or json")
	f.BoolVarP(&g.verbose, "verbose", "v", false, "log more detail")
}

func (g *globalFlags) argMap() (map[string]string, error) {
	m := map[string]string{}
	for _, a := range g.args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, usageError{fmt.Errorf("--arg %q: expected NAME=VALUE", a)}
		}
		m[k] = v
	}
	return m, nil
}

// options turns the flags into build options, with the --progress display
// (close it when the command ends). Its errors are usage errors naming the
// flag or SOURCE_DATE_EPOCH.
func (g *globalFlags) options(cmd *cobra.Command) (layerimg.Options, display, error) {
	comp, epoch, err := g.checkUsage()
	if err != nil {
		return layerimg.Options{}, nil, err
	}
	d, err := g.display(cmd)
	if err != nil {
		return layerimg.Options{}, nil, err
	}
	return layerimg.Options{
		CacheDir: g.cacheDir, InsecureRegistries: g.insecure, Compression: comp, CacheFrom: g.cacheFrom,
		Epoch: epoch, Log: d.Logger(), Output: cmd.ErrOrStderr(), Progress: d,
	}, d, nil
}

// checkUsage checks the global flags and SOURCE_DATE_EPOCH; its errors are
// usage errors.
func (g *globalFlags) checkUsage() (layers.Compression, int64, error) {
	comp, err := layers.ParseCompression(g.compression)
	if err != nil {
		return "", 0, usageError{fmt.Errorf("--compression: %w", err)}
	}
	epoch, err := layerimg.EpochFromEnv()
	if err != nil {
		return "", 0, usageError{err}
	}
	return comp, epoch, nil
}

// cache is --cache-dir, or the default cache directory.
func (g *globalFlags) cache() (string, error) {
	if g.cacheDir != "" {
		return g.cacheDir, nil
	}
	return layers.DefaultCacheDir()
}

// openCache opens the cache directory for a cache subcommand, shared or
// (to change it) exclusive; doing ("listing") words the error.
func (g *globalFlags) openCache(doing string, exclusive bool) (*layers.Cache, string, error) {
	dir, err := g.cache()
	if err != nil {
		return nil, "", fmt.Errorf("%s the cache: %w", doing, err)
	}
	cache, err := layers.OpenCache(dir, exclusive, nil)
	if err != nil {
		return nil, "", fmt.Errorf("opening cache %s: %w", dir, err)
	}
	return cache, dir, nil
}
