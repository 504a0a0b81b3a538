package layerimg

// sbomInput is the SBOM the build made (the SPDX JSON document, and the
// --sbom file it was written to), for the attest stage to sign and attach.
// Nil until the SBOM stage exists; wired to Result.SBOM at the merge.
func sbomInput(res *Result, o *Options) ([]byte, string) { return nil, "" }
