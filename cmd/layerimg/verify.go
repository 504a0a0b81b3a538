package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/layerimg/layerimg/export/sign"
	"github.com/layerimg/layerimg/layers"
)

func newVerifyCmd(g *globalFlags) *cobra.Command {
	var key, bundle string
	c := &cobra.Command{
		Use:   "verify REF|FILE --key PUB",
		Short: "Check the signatures of a pushed image or of a file a build wrote",
		Long: `Check signatures as cosign does, with a public key (cosign.pub).
For a registry REF: some signature in its sha256-HEX.sig tag verifies and names
the image's digest; its attestations (sha256-HEX.att), if any, verify and name
the image among their subjects. For a FILE (a disk, the SBOM, the provenance):
the bundle beside it (FILE.bundle) verifies over the file's bytes.
Exit status 0 when everything checks, 1 otherwise.`,
		Example: `  layerimg verify registry.example.com/golden:1.4 --key cosign.pub
  layerimg verify out/disk.raw --key cosign.pub`,
		Args: exactlyOne("image reference or file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" {
				return usageError{errors.New("verify needs --key PUB (a cosign public key)")}
			}
			v, err := sign.LoadPublicKey(key)
			if err != nil {
				return err
			}
			ctx, out, target := cmd.Context(), cmd.OutOrStdout(), args[0]
			if fi, err := os.Stat(target); err == nil && !fi.IsDir() {
				if err := sign.VerifyFile(ctx, v, target, bundle); err != nil {
					return err
				}
				fmt.Fprintf(out, "%s: signature verified\n", target)
				return nil
			}
			if bundle != "" {
				return usageError{fmt.Errorf("--bundle is for a FILE, and %s is not one", target)}
			}
			reg := layers.Registry{Insecure: g.insecure}
			ref, err := reg.ParseRef(target)
			if err != nil {
				return fmt.Errorf("%s is neither a file nor an image reference: %w", target, err)
			}
			rep, err := sign.VerifyImage(ctx, v, ref, sign.Remote{Options: reg.Options(ctx)})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "%s: %d signature(s) verified\n", rep.Digest, rep.Signatures)
			for _, a := range rep.Attestations {
				fmt.Fprintf(out, "  attestation verified: %s\n", a.PredicateType)
			}
			if rep.Ignored > 0 {
				fmt.Fprintf(out, "  %d signature(s) or attestation(s) not made with this key were ignored\n", rep.Ignored)
			}
			return nil
		},
	}
	c.Flags().StringVar(&key, "key", "", "the signer's public key `PUB` (cosign.pub)")
	c.Flags().StringVar(&bundle, "bundle", "", "a FILE's bundle, when not FILE.bundle")
	return c
}

// loadSignKey loads --sign-key with the password in COSIGN_PASSWORD
// (unset: an empty password, as cosign's own keys may have).
func loadSignKey(path string) (sign.Signer, error) {
	pw := os.Getenv(sign.PasswordEnv)
	s, err := sign.LoadKey(path, []byte(pw))
	if err != nil {
		return nil, fmt.Errorf("--sign-key: %w", err)
	}
	return s, nil
}
