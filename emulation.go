package layerimg

import (
	"runtime"

	"github.com/layerimg/layerimg/rootfs"
)

// checkEmulation refuses, before anything runs in the sandbox, a build for
// another architecture than the host's when binfmt_misc cannot run its
// binaries; its error says what to install. A native build checks nothing.
func (p *planner) checkEmulation() error {
	return rootfs.CheckEmulation("/", runtime.GOARCH, p.r.Platform)
}
