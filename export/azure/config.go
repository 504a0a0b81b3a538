package azure

import (
	"fmt"
	"maps"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"

	"github.com/layerimg/layerimg/export/internal/envvar"
	"github.com/layerimg/layerimg/recipes"
)

// The environment variables Config.FromEnv reads. AZURE_AUTHORITY_HOST is
// azidentity's own name; ARM has no SDK-wide one, so
// AZURE_RESOURCE_MANAGER_ENDPOINT follows the cloud configuration's field
// (ResourceManager endpoint), as Azure Stack docs and tools spell it.
const (
	EnvSubscription  = "AZURE_SUBSCRIPTION_ID"
	EnvARMEndpoint   = "AZURE_RESOURCE_MANAGER_ENDPOINT"
	EnvAuthorityHost = "AZURE_AUTHORITY_HOST"
)

// FromRecipe is the recipe's publish.azure section as publisher config.
// The recipe holds no credentials; FromEnv adds what the environment says.
func FromRecipe(a *recipes.Azure) Config {
	if a == nil {
		return Config{}
	}
	c := Config{
		SubscriptionID: a.SubscriptionID, ResourceGroup: a.ResourceGroup, Location: a.Location, ImageName: a.ImageName,
		Cloud: a.Cloud, HyperVGeneration: a.HyperVGeneration, SecurityType: a.SecurityType, OSType: a.OSType,
		Tags: a.Tags, KeepDisk: a.KeepDisk,
	}
	if g := a.Gallery; g != nil {
		c.Gallery = &Gallery{Name: g.Name, ImageDefinition: g.ImageDefinition, Version: g.Version, ReplicaRegions: g.ReplicaRegions,
			ExcludeFromLatest: g.ExcludeFromLatest, Publisher: g.Publisher, Offer: g.Offer, SKU: g.SKU}
	}
	return c
}

// FromEnv fills empty fields from the variables Azure users have set:
// the subscription from AZURE_SUBSCRIPTION_ID, the ARM endpoint from
// AZURE_RESOURCE_MANAGER_ENDPOINT and the Entra ID authority from
// AZURE_AUTHORITY_HOST. It is the only place the package reads them.
func (c Config) FromEnv() Config {
	envvar.Default(&c.SubscriptionID, EnvSubscription)
	envvar.Default(&c.Endpoint, EnvARMEndpoint)
	envvar.Default(&c.AuthorityHost, EnvAuthorityHost)
	return c
}

// cloudConfig is the SDK's configuration of c.Cloud with c's overrides.
func (c *Config) cloudConfig() (cloud.Configuration, error) {
	var base cloud.Configuration
	switch c.Cloud {
	case "", recipes.AzurePublic:
		base = cloud.AzurePublic
	case recipes.AzureChina:
		base = cloud.AzureChina
	case recipes.AzureUSGovernment:
		base = cloud.AzureGovernment
	default:
		return cloud.Configuration{}, fmt.Errorf("azure: unknown cloud %q", c.Cloud)
	}
	// The SDK's configurations are shared values: change a copy.
	cc := cloud.Configuration{ActiveDirectoryAuthorityHost: base.ActiveDirectoryAuthorityHost, Services: maps.Clone(base.Services)}
	if c.AuthorityHost != "" {
		cc.ActiveDirectoryAuthorityHost = c.AuthorityHost
	}
	if c.Endpoint != "" {
		rm := cc.Services[cloud.ResourceManager]
		rm.Endpoint = c.Endpoint
		cc.Services[cloud.ResourceManager] = rm
	}
	return cc, nil
}
