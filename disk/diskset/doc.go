// Package diskset is the cache of finished disk sets: the disk files
// (raw, vmdk, vhd, qcow2) one image and one disk section make, kept under
// the disk stage's cache key beside the layer cache, handed out by hardlink,
// checked for writes through those links, and pulled from and pushed to
// registry caches as an extra section of the layer cache's index.
//
// It builds nothing: the caller makes the disks in a scratch folder and
// hands them to Put.
package diskset
