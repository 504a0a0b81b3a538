// Package layerimg is the build orchestrator: it wires the stages together,
// recipe -> base -> step layers (cached) -> tests -> disks -> outputs and
// publishing, as a short sequence of named stage calls (see Build). It is
// the only package that knows every stage; the stage code itself lives in
// layers, rootfs, disk (and disk/diskset) and export. cmd/layerimg is a
// thin CLI over it.
package layerimg
