// Package azure publishes a disk to Azure without a storage account: the
// fixed VHD is uploaded straight into a managed disk through the SAS URL
// that grantAccess hands out, and a managed image and/or an Azure Compute
// Gallery image version is made from the disk.
package azure
