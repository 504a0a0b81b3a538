// Package envvar reads the environment variables the publishers honour, in
// the one place each package reads them: its Config's FromEnv.
package envvar

import "os"

// Default sets *dst, when it is empty, from the environment variable name:
// a setting given in the recipe or on the command line wins.
func Default(dst *string, name string) {
	if *dst == "" {
		*dst = os.Getenv(name)
	}
}
