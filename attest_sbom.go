package layerimg

// sbomInput is the SBOM the build made (the SPDX JSON document, and the
// file it was written to, if any), for the attest stage to sign and attach.
func sbomInput(res *Result, _ *Options) ([]byte, string) {
	if res.SBOM == nil {
		return nil, ""
	}
	return res.SBOM.Document, res.SBOM.Path
}
