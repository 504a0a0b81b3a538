// Package registry publishes to OCI registries: the built image, the disk as
// a KubeVirt containerDisk, and the disk files as an OCI artifact.
package registry
