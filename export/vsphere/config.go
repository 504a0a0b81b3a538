package vsphere

import "github.com/layerimg/layerimg/recipes"

// FromRecipe is the recipe's publish.vsphere section as publisher config.
// FromEnv fills in what the GOVC_* variables say.
func FromRecipe(v *recipes.VSphere) Config {
	if v == nil {
		return Config{}
	}
	return Config{
		URL: v.URL, Username: v.Username, Password: v.Password, Insecure: v.Insecure, Thumbprint: v.Thumbprint,
		Datacenter: v.Datacenter, Datastore: v.Datastore, Cluster: v.Cluster, Host: v.Host, ResourcePool: v.ResourcePool,
		Folder: v.Folder, Network: v.Network, TemplateName: v.TemplateName, CPUs: v.CPUs, MemoryMB: v.MemoryMB,
		HardwareVersion: v.HardwareVersion, GuestID: v.GuestID, Firmware: v.Firmware, SecureBoot: v.SecureBoot,
		DiskController: v.DiskController, Annotation: v.Annotation, ReplaceExisting: v.ReplaceExisting, ContentLibrary: v.ContentLibrary,
	}
}
