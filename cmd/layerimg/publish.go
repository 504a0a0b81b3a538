package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg/export/vsphere"
)

func newPublishCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{
		Use:   "publish",
		Short: "Publish a finished disk to a cloud",
	}
	c.AddCommand(newPublishVSphereCmd(g))
	return c
}

func newPublishVSphereCmd(g *globalFlags) *cobra.Command {
	var cfg vsphere.Config
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
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("expected one VMDK, got %d arguments", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			digest, err := fileSHA256(args[0])
			if err != nil {
				return err
			}
			cfg.Digest, cfg.Log = digest, log
			res, err := vsphere.Publish(cmd.Context(), args[0], cfg.FromEnv())
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(res)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.URL, "url", "", "vCenter URL (default $GOVC_URL)")
	f.StringVar(&cfg.Username, "username", "", "user (default $GOVC_USERNAME); the password comes from $GOVC_PASSWORD")
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
	f.IntVar(&cfg.CPUs, "cpus", 2, "virtual CPUs")
	f.IntVar(&cfg.MemoryMB, "memory-mb", 2048, "memory in MiB")
	f.StringVar(&cfg.HardwareVersion, "hardware-version", "vmx-19", "virtual hardware version")
	f.StringVar(&cfg.GuestID, "guest-id", "debian12_64Guest", "guest OS id")
	f.StringVar(&cfg.Firmware, "firmware", "efi", "efi or bios")
	f.BoolVar(&cfg.SecureBoot, "secure-boot", false, "enable UEFI Secure Boot (the disk must use boot: grub)")
	f.StringVar(&cfg.DiskController, "disk-controller", "pvscsi", "pvscsi or nvme")
	f.StringVar(&cfg.Annotation, "annotation", "", "the template's notes")
	f.BoolVar(&cfg.ReplaceExisting, "replace-existing", false, "replace a template of the same name")
	f.StringVar(&cfg.ContentLibrary, "content-library", "", "also store the OVF in this content library")
	f.BoolVar(&cfg.Force, "force", false, "import even if this disk is already published")
	return c
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return fmt.Sprintf("sha256:%x", h.Sum(nil)), nil
}
