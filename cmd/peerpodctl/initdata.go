package main

import (
	"encoding/hex"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/peerpod/peerpod/api/initdata"
)

func newInitdataCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "initdata",
		Short: "initdata tools",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "digest FILE",
		Short: "Print the digest of an initdata document (TOML, or the base64-gzip annotation value; - for stdin)",
		Long: `digest validates an initdata document and prints its digest, the value
attestation binds, and the forms launchers put in the TEE's config field:
SNP HOST_DATA (32 bytes) and TDX MRCONFIGID (48 bytes), zero-padded or
truncated.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := readInput(cmd.InOrStdin(), args[0])
			if err != nil {
				return err
			}
			text, err := initdata.DecodeAnnotation(string(raw))
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			id, err := initdata.Parse(text)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			d := id.Digest()
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s %s\n", id.Algorithm, hex.EncodeToString(d))
			fmt.Fprintf(w, "snp host_data %s\n", hex.EncodeToString(initdata.Fit(d, 32)))
			fmt.Fprintf(w, "tdx mrconfigid %s\n", hex.EncodeToString(initdata.Fit(d, 48)))
			if id.Policy() == "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: no policy.rego: the agent will deny all but health, guest details and teardown")
			}
			return nil
		},
	})
	return cmd
}
