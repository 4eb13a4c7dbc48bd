package main

import "github.com/spf13/cobra"

// addToolCmds adds the policy and initdata tools (policy.go, initdata.go).
func addToolCmds(root *cobra.Command) {
	root.AddCommand(newPolicyCmd(), newInitdataCmd())
}
