package layerimg

// sbomInput is the SBOM the build made (the SPDX JSON document, and the
// --sbom file it was written to), for the attest stage to sign and attach.
// Nil until the SBOM stage is merged; then its body is:
//
//	if res.SBOM == nil {
//		return nil, ""
//	}
//	return res.SBOM.Document, res.SBOM.Path
func sbomInput(res *Result, o *Options) ([]byte, string) { return nil, "" }
