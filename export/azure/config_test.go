package azure

import (
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
)

func TestCloudConfig(t *testing.T) {
	for _, tc := range []struct {
		c              Config
		authority, arm string
		wantErr        bool
	}{
		{Config{}, "https://login.microsoftonline.com/", "https://management.azure.com", false},
		{Config{Cloud: "AzureChina"}, "https://login.chinacloudapi.cn/", "https://management.chinacloudapi.cn", false},
		{Config{Cloud: "AzureUSGovernment"}, "https://login.microsoftonline.us/", "https://management.usgovcloudapi.net", false},
		{Config{Cloud: "AzureChina", Endpoint: "https://arm.local", AuthorityHost: "https://login.local/"}, "https://login.local/", "https://arm.local", false},
		{Config{Cloud: "Mars"}, "", "", true},
	} {
		cc, err := tc.c.cloudConfig()
		if (err != nil) != tc.wantErr {
			t.Errorf("%+v: %v", tc.c, err)
			continue
		}
		if tc.wantErr {
			continue
		}
		if cc.ActiveDirectoryAuthorityHost != tc.authority || cc.Services[cloud.ResourceManager].Endpoint != tc.arm {
			t.Errorf("%s: authority %s, ARM %s", tc.c.Cloud, cc.ActiveDirectoryAuthorityHost, cc.Services[cloud.ResourceManager].Endpoint)
		}
	}
	// An override changes a copy, never the SDK's shared configuration.
	if got := cloud.AzureChina.Services[cloud.ResourceManager].Endpoint; got != "https://management.chinacloudapi.cn" {
		t.Errorf("cloud.AzureChina was changed: %s", got)
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv(EnvSubscription, "sub-env")
	t.Setenv(EnvARMEndpoint, "https://arm.env")
	t.Setenv(EnvAuthorityHost, "https://login.env/")
	c := Config{SubscriptionID: "sub-flag"}.FromEnv()
	if c.SubscriptionID != "sub-flag" || c.Endpoint != "https://arm.env" || c.AuthorityHost != "https://login.env/" {
		t.Errorf("FromEnv = %+v", c)
	}
}
