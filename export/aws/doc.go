// Package aws publishes a disk as an Amazon Machine Image without S3: the
// disk's non-zero 512 KiB blocks go straight into an EBS snapshot through
// the EBS direct APIs, and the snapshot is registered as an AMI, then
// copied and shared. ImportSnapshot through S3 remains as an option.
package aws
