// Package vsphere publishes a streamOptimized VMDK to vSphere as a VM
// template: an OVF import over an NFC lease, then MarkAsTemplate.
package vsphere
