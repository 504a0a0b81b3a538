package recipes

// The values the publish sections' enumerated settings take. The parser,
// the publishers' checks and the CLI's help all read them from here, so a
// value is spelled once in Go (schema.json and docs/recipe.md repeat them
// for editors and readers; TestSchemaEnums keeps them in step).

// AWS boot modes (publish.aws.boot_mode).
const (
	BootModeUEFI          = "uefi"
	BootModeUEFIPreferred = "uefi-preferred" // disks that also boot BIOS
	BootModeLegacyBIOS    = "legacy-bios"
)

// AWSBootModes lists publish.aws.boot_mode's values, the default first.
func AWSBootModes() []string {
	return []string{BootModeUEFI, BootModeUEFIPreferred, BootModeLegacyBIOS}
}

// AWSArchitectures lists publish.aws.architecture's values, the default first.
func AWSArchitectures() []string { return []string{"x86_64", "arm64"} }

// AWSIMDSSupport lists publish.aws.imds_support's values, the default first.
func AWSIMDSSupport() []string { return []string{"v2.0", "none"} }

// AWSTPMSupport lists publish.aws.tpm_support's values (empty: none).
func AWSTPMSupport() []string { return []string{"v2.0"} }

// AWSVolumeTypes lists the EBS volume types that can boot, the default first.
func AWSVolumeTypes() []string { return []string{"gp3", "gp2", "io1", "io2", "standard"} }

// AWS upload methods (publish.aws.method).
const (
	MethodEBSDirect      = "ebs-direct"
	MethodImportSnapshot = "import-snapshot"
)

// AWSMethods lists publish.aws.method's values, the default first.
func AWSMethods() []string { return []string{MethodEBSDirect, MethodImportSnapshot} }

// AzureHyperVGenerations lists publish.azure.hyper_v_generation's values,
// the default first.
func AzureHyperVGenerations() []string { return []string{"V2", "V1"} }

// AzureSecurityTypes lists publish.azure.security_type's values, the
// default first.
func AzureSecurityTypes() []string { return []string{"Standard", "TrustedLaunch"} }

// AzureOSTypes lists publish.azure.os_type's values.
func AzureOSTypes() []string { return []string{"Linux"} }

// Azure clouds (publish.azure.cloud), named as the Azure CLI names them.
const (
	AzurePublic       = "AzurePublic"
	AzureChina        = "AzureChina"
	AzureUSGovernment = "AzureUSGovernment"
)

// AzureClouds lists publish.azure.cloud's values, the default first.
func AzureClouds() []string { return []string{AzurePublic, AzureChina, AzureUSGovernment} }
