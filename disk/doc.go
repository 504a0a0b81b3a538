// Package disk makes bootable GPT disks from a rootfs tree: an EFI system
// partition (FAT32) and an ext4 root, with the boot loader found in the
// rootfs itself. Every identifier is derived from the image's digest, so the
// same image gives the same disk bytes.
package disk
