package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg/disk"
	"github.com/layerimg/layerimg/export/aws"
	"github.com/layerimg/layerimg/export/azure"
	"github.com/layerimg/layerimg/export/vsphere"
	"github.com/layerimg/layerimg/recipes"
)

func newPublishAWSCmd(g *globalFlags) *cobra.Command {
	cfg := aws.DefaultConfig()
	var manifest string
	var full bool
	c := &cobra.Command{
		Use:   "aws DISK --region REGION",
		Short: "Publish a raw disk (or fixed VHD) as an AMI through the EBS direct APIs",
		Long: `Write the disk's non-zero 512 KiB blocks straight into an EBS snapshot (no S3
bucket, no vmimport role), register it as an AMI (UEFI, ENA, IMDSv2 by
default), tag it, copy it to other regions and share it. Credentials come from
the AWS SDK's chain: AWS_* variables, --profile or AWS_PROFILE, SSO, web
identity (GitHub OIDC), IMDS. The image carries the disk's sha256 in the tag
layerimg:digest: publishing the same disk again returns the AMI already there
(--force uploads again). --method import-snapshot takes a streamOptimized VMDK,
puts it in --s3-bucket and calls ImportSnapshot instead.

The block hashes of each upload are kept in the cache directory: the next
upload with the same --recipe-name and region starts from that snapshot and
sends only the blocks that changed (--full sends them all).

The name is a template: {{.Name}} (--recipe-name), {{.Date}}, {{.Time}},
{{.Digest}} (12 hex digits of the disk's sha256).`,
		Example: `  layerimg publish aws out/disk.raw --region eu-west-1 --name 'web-{{.Date}}'
  layerimg publish aws out/disk.raw --region eu-west-1 --name 'web-{{.Digest}}' \
      --copy-to us-east-1,us-west-2 --share-with 123456789012 --manifest out/ami.json`,
		Args: exactlyOne("disk"),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := g.display(cmd)
			if err != nil {
				return err
			}
			defer d.Close()
			log := d.Logger()
			cfg = cfg.FromEnv()
			if cfg.Digest, err = disk.ContentDigest(args[0]); err != nil {
				return fmt.Errorf("publishing %s: %w", args[0], err)
			}
			if !full {
				dir, err := g.cache()
				if err != nil {
					return fmt.Errorf("finding the cache for the block hashes: %w", err)
				}
				cfg.StateDir = filepath.Join(dir, "publish")
			}
			cfg.Log = log
			res, err := aws.Publish(cmd.Context(), args[0], cfg)
			if err != nil {
				err = fmt.Errorf("publishing %s to aws %s: %w", args[0], cfg.Region, err)
			}
			return printResult(cmd.OutOrStdout(), manifest, res, err)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Region, "region", "", "region (default $"+aws.EnvRegion+")")
	f.StringVar(&cfg.Profile, "profile", "", "shared config profile (default $AWS_PROFILE)")
	f.StringVar(&cfg.Name, "name", cfg.Name, "image name template")
	f.StringVar(&cfg.Recipe, "recipe-name", defaultRecipeName, "the {{.Name}} of the name template, and the layerimg:recipe tag")
	f.StringVar(&cfg.Description, "description", "", "image description")
	f.StringToStringVar(&cfg.Tags, "tag", nil, "tag `KEY=VALUE` for the image and snapshot (repeatable)")
	f.StringVar(&cfg.BootMode, "boot-mode", cfg.BootMode, oneOf(recipes.AWSBootModes()))
	f.StringVar(&cfg.Architecture, "architecture", "", oneOf(recipes.AWSArchitectures())+" (default: the disk's, from its root partition's GPT type, else x86_64)")
	f.BoolVar(cfg.ENASupport, "ena", *cfg.ENASupport, "ENA support")
	f.StringVar(&cfg.IMDSSupport, "imds-support", cfg.IMDSSupport, "v2.0 (instances require IMDSv2) or none")
	f.StringVar(&cfg.TPMSupport, "tpm-support", "", "v2.0 for NitroTPM")
	f.StringVar(&cfg.RootDeviceName, "root-device-name", cfg.RootDeviceName, "root device name")
	f.StringVar(&cfg.VolumeType, "volume-type", cfg.VolumeType, "root volume type: "+oneOf(recipes.AWSVolumeTypes()))
	f.Int64Var(&cfg.VolumeSize, "volume-size", 0, "root volume size in GiB (default: the disk's size)")
	f.BoolVar(&cfg.Encrypted, "encrypted", false, "encrypt the snapshot")
	f.StringVar(&cfg.KMSKeyID, "kms-key-id", "", "KMS key ARN for --encrypted")
	f.StringSliceVar(&cfg.CopyTo, "copy-to", nil, "copy the AMI to these regions")
	f.StringSliceVar(&cfg.ShareAccounts, "share-with", nil, "grant launch permission to these account IDs")
	f.StringSliceVar(&cfg.ShareOrganizations, "share-with-org", nil, "grant launch permission to these organization ARNs")
	f.StringSliceVar(&cfg.ShareOrganizational, "share-with-ou", nil, "grant launch permission to these OU ARNs")
	f.StringVar(&cfg.Method, "method", cfg.Method, oneOf(recipes.AWSMethods()))
	f.StringVar(&cfg.S3Bucket, "s3-bucket", "", "bucket for --method import-snapshot")
	f.StringVar(&cfg.RoleName, "role-name", "", "service role for --method import-snapshot (AWS's default: vmimport)")
	f.IntVar(&cfg.Parallel, "parallel", cfg.Parallel, "concurrent block uploads")
	f.BoolVar(&full, "full", false, "send every block, not only those changed since this --recipe-name's last upload")
	f.DurationVar(&cfg.SnapshotTimeout, "snapshot-timeout", cfg.SnapshotTimeout, "how long to wait for the snapshot to complete")
	f.DurationVar(&cfg.CopyTimeout, "copy-timeout", cfg.CopyTimeout, "how long to wait for each copy")
	f.DurationVar(&cfg.PollInterval, "poll-interval", cfg.PollInterval, "how often to ask whether a snapshot or copy is done")
	f.BoolVar(&cfg.Force, "force", false, "upload even if this disk is already published")
	f.StringVar(&manifest, "manifest", "", "also write the result (JSON) to `FILE`")
	return c
}

func newPublishAzureCmd(g *globalFlags) *cobra.Command {
	cfg := azure.DefaultConfig()
	var gal azure.Gallery
	var manifest, boot string
	c := &cobra.Command{
		Use:   "azure DISK --resource-group RG --location L (--image NAME | --gallery G ...)",
		Short: "Upload a fixed VHD (or raw disk) into a managed disk and make an image from it",
		Long: `Create a managed disk for upload, write the disk's non-zero 512-byte ranges
into it through the SAS URL that grantAccess hands out (no storage account),
revoke access, and make a managed image (--image) and/or an Azure Compute
Gallery image version (--gallery, --gallery-image, --gallery-version). The
image definition is created when missing. The upload disk is deleted
afterwards unless --keep-disk. A raw disk is streamed as a fixed VHD.

Credentials come from azidentity's DefaultAzureCredential: AZURE_CLIENT_ID,
AZURE_TENANT_ID and AZURE_CLIENT_SECRET (or a certificate), workload identity
(GitHub OIDC), managed identity, or the Azure CLI's login. The subscription
comes from --subscription or AZURE_SUBSCRIPTION_ID. The images carry the disk's
sha256 in the tag layerimg-digest: publishing the same disk again returns them.`,
		Example: `  layerimg publish azure out/disk.vhd --resource-group images --location westeurope --image web-1.4
  layerimg publish azure out/disk.vhd --resource-group images --location westeurope \
      --gallery G --gallery-image web --gallery-version 1.4.0 --replicate-to northeurope,eastus`,
		Args: exactlyOne("disk"),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := g.display(cmd)
			if err != nil {
				return err
			}
			defer d.Close()
			log := d.Logger()
			cfg = cfg.FromEnv()
			if gal.Name != "" || gal.ImageDefinition != "" || gal.Version != "" {
				cfg.Gallery = &gal
			}
			cfg.BootMode = boot
			if cfg.SecurityType == "TrustedLaunch" { // only then does the layout matter
				if cfg.BootMode, err = bootLayout(args[0], boot); err != nil {
					return fmt.Errorf("publishing %s: %w", args[0], err)
				}
			}
			if cfg.Digest, err = disk.ContentDigest(args[0]); err != nil {
				return fmt.Errorf("publishing %s: %w", args[0], err)
			}
			cfg.Log = log
			res, err := azure.Publish(cmd.Context(), args[0], cfg)
			if err != nil {
				err = fmt.Errorf("publishing %s to azure %s/%s: %w", args[0], cfg.ResourceGroup, cfg.Location, err)
			}
			return printResult(cmd.OutOrStdout(), manifest, res, err)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.SubscriptionID, "subscription", "", "subscription ID (default $"+azure.EnvSubscription+")")
	f.StringVar(&cfg.ResourceGroup, "resource-group", "", "resource group (required)")
	f.StringVar(&cfg.Location, "location", "", "region, such as westeurope (required)")
	f.StringVar(&cfg.ImageName, "image", "", "make a managed image of this name")
	f.StringVar(&gal.Name, "gallery", "", "Azure Compute Gallery to publish a version to")
	f.StringVar(&gal.ImageDefinition, "gallery-image", "", "the gallery's image definition (created when missing)")
	f.StringVar(&gal.Version, "gallery-version", "", "version to make, MAJOR.MINOR.PATCH")
	f.StringSliceVar(&gal.ReplicaRegions, "replicate-to", nil, "regions to replicate the version to")
	f.BoolVar(&gal.ExcludeFromLatest, "exclude-from-latest", false, "keep the version out of 'latest'")
	f.StringVar(&gal.Publisher, "publisher", "", "publisher for a new image definition (default "+azure.DefaultGalleryPublisher+")")
	f.StringVar(&gal.Offer, "offer", "", "offer for a new image definition (default: --recipe-name)")
	f.StringVar(&gal.SKU, "sku", "", "SKU for a new image definition (default: --recipe-name)")
	f.StringVar(&cfg.Recipe, "recipe-name", defaultRecipeName, "the layerimg-recipe tag")
	f.StringVar(&cfg.HyperVGeneration, "hyper-v-generation", cfg.HyperVGeneration, "V2 (UEFI) or V1")
	f.StringVar(&cfg.SecurityType, "security-type", cfg.SecurityType, "Standard or TrustedLaunch (needs a boot: grub disk)")
	f.StringVar(&boot, "boot", "", "the disk's boot layout (grub, systemd-boot); read from the disk when empty")
	f.StringToStringVar(&cfg.Tags, "tag", nil, "tag `KEY=VALUE` (repeatable)")
	f.BoolVar(&cfg.KeepDisk, "keep-disk", false, "keep the upload's managed disk")
	f.IntVar(&cfg.Parallel, "parallel", cfg.Parallel, "concurrent page writes")
	f.Int64Var(&cfg.MergeGap, "merge-gap", cfg.MergeGap, "send zero gaps up to this many bytes with their neighbours (-1: only non-zero sectors)")
	f.BoolVar(&cfg.Force, "force", false, "upload again even if this disk is already published (replaces a managed image)")
	f.StringVar(&manifest, "manifest", "", "also write the result (JSON) to `FILE`")
	return c
}

// defaultRecipeName is --recipe-name's default: what a disk published
// without a recipe is named after.
const defaultRecipeName = "layerimg"

// oneOf words a list of allowed values for a flag's help: "a, b or c".
func oneOf(vs []string) string {
	if len(vs) < 2 {
		return strings.Join(vs, "")
	}
	return strings.Join(vs[:len(vs)-1], ", ") + " or " + vs[len(vs)-1]
}

// bootLayout is the --boot flag, else what the disk's ESP holds.
func bootLayout(path, flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	l, err := disk.LayoutOf(path)
	if err != nil {
		return "", fmt.Errorf("%w (say the layout with --boot)", err)
	}
	return l, nil
}

// printResult prints what a publish made, when it made anything, and writes
// it to manifest when set. A result can come with an error (an AMI made, a
// copy failed): both are reported.
func printResult[R any](w io.Writer, manifest string, res *R, err error) error {
	if res == nil {
		return err
	}
	if werr := writeJSON(w, manifest, res); err == nil {
		err = werr
	}
	return err
}

// writeJSON prints v, and writes it to path when set.
func writeJSON(w io.Writer, path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return err
	}
	if path == "" {
		return nil
	}
	return os.WriteFile(path, b, 0o644)
}

func newPublishVSphereCmd(g *globalFlags) *cobra.Command {
	cfg := vsphere.DefaultConfig()
	c := &cobra.Command{
		Use:   "vsphere DISK.vmdk --template NAME",
		Short: "Publish a streamOptimized VMDK as a vSphere template",
		Long: `Import the VMDK as a VM over an NFC lease (EFI, PVSCSI or NVMe, VMXNET3) and
mark it a template. Connection and placement come from the flags, else from
GOVC_URL, GOVC_USERNAME, GOVC_PASSWORD, GOVC_INSECURE, GOVC_DATACENTER,
GOVC_DATASTORE, GOVC_CLUSTER, GOVC_RESOURCE_POOL, GOVC_FOLDER, GOVC_NETWORK.
The template carries the disk's sha256 in its extraConfig: publishing the same
disk again returns the template already there (--force imports again).`,
		Example: `  GOVC_URL=vc.example.com GOVC_USERNAME=builder GOVC_PASSWORD=... \
    layerimg publish vsphere out/disk.vmdk --template web-1.4 --cluster C --network 'VM Network'
  layerimg publish vsphere out/disk.vmdk --template web-1.4 --replace-existing --thumbprint AB:CD:...`,
		Args: exactlyOne("VMDK"),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := g.display(cmd)
			if err != nil {
				return err
			}
			defer d.Close()
			log := d.Logger()
			digest, err := disk.ContentDigest(args[0])
			if err != nil {
				return fmt.Errorf("publishing %s: %w", args[0], err)
			}
			cfg.Digest, cfg.Log = digest, log
			cfg = cfg.FromEnv()
			res, err := vsphere.Publish(cmd.Context(), args[0], cfg)
			if err != nil {
				// Not the URL: GOVC_URL may carry a password.
				err = fmt.Errorf("publishing %s to vsphere template %s: %w", args[0], cfg.TemplateName, err)
			}
			return printResult(cmd.OutOrStdout(), "", res, err)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.URL, "url", "", "vCenter URL (default $"+vsphere.EnvURL+")")
	f.StringVar(&cfg.Username, "username", "", "user (default $"+vsphere.EnvUsername+"); the password comes from $"+vsphere.EnvPassword)
	f.BoolVar(&cfg.Insecure, "insecure", false, "skip TLS verification (prefer --thumbprint)")
	f.StringVar(&cfg.Thumbprint, "thumbprint", "", "trust the certificate with this SHA-1 thumbprint")
	f.StringVar(&cfg.Datacenter, "datacenter", "", "datacenter")
	f.StringVar(&cfg.Datastore, "datastore", "", "datastore")
	f.StringVar(&cfg.Cluster, "cluster", "", "cluster")
	f.StringVar(&cfg.Host, "host", "", "host")
	f.StringVar(&cfg.ResourcePool, "resource-pool", "", "resource pool")
	f.StringVar(&cfg.Folder, "folder", "", "VM folder")
	f.StringVar(&cfg.Network, "network", "", "network for the NIC")
	f.StringVar(&cfg.TemplateName, "template", "", "template name (required)")
	f.IntVar(&cfg.CPUs, "cpus", cfg.CPUs, "virtual CPUs")
	f.IntVar(&cfg.MemoryMB, "memory-mb", cfg.MemoryMB, "memory in MiB")
	f.StringVar(&cfg.HardwareVersion, "hardware-version", cfg.HardwareVersion, "virtual hardware version")
	f.StringVar(&cfg.GuestID, "guest-id", cfg.GuestID, "guest OS id")
	f.StringVar(&cfg.Firmware, "firmware", cfg.Firmware, oneOf(vsphere.Firmwares()))
	f.BoolVar(&cfg.SecureBoot, "secure-boot", false, "enable UEFI Secure Boot (the disk must use boot: grub)")
	f.StringVar(&cfg.DiskController, "disk-controller", cfg.DiskController, oneOf(vsphere.DiskControllers()))
	f.StringVar(&cfg.Annotation, "annotation", "", "the template's notes")
	f.BoolVar(&cfg.ReplaceExisting, "replace-existing", false, "replace a template of the same name")
	f.StringVar(&cfg.ContentLibrary, "content-library", "", "also store the OVF in this content library")
	f.BoolVar(&cfg.Force, "force", false, "import even if this disk is already published")
	return c
}
