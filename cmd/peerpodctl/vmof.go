package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/peerpod/peerpod/shim/config"
	"github.com/peerpod/peerpod/shim/sandbox"
)

// vmOf is what vm-of prints for one sandbox of the pod.
type vmOf struct {
	Pod          string `json:"pod"`
	SandboxID    string `json:"sandbox_id"`
	State        string `json:"state"`
	VMName       string `json:"vm_name"`
	VMID         string `json:"vm_id,omitempty"`
	InstanceType string `json:"instance_type,omitempty"`
	VMAddr       string `json:"vm_addr,omitempty"`
	Error        string `json:"error,omitempty"`
}

func newVMOfCmd(e env) *cobra.Command {
	var url, stateDir, output string
	cmd := &cobra.Command{
		Use:   "vm-of [NAMESPACE/]POD",
		Short: "Show the VM behind a peer pod on this node",
		Long: "vm-of finds the pod's sandbox in peerpodd's status (or its journal when peerpodd does\n" +
			"not answer) and prints its VM: name, provider id, instance type, tunnel address, state.\n" +
			"The namespace defaults to \"default\".",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			ns, name, err := parsePodRef(args[0])
			if err != nil {
				return err
			}
			rep, err := getStatus(cmd.Context(), url, stateDir, e.getenv)
			if err != nil {
				return err
			}
			found := findVMs(rep.Sandboxes, ns, name)
			if len(found) == 0 {
				return fmt.Errorf("no sandbox of pod %s/%s on this node (%s, from %s); peer pods run on the node that hosts them", ns, name, rep.Node, rep.Source)
			}
			if output == outJSON {
				return writeJSON(writerOf(cmd), found)
			}
			return writeVMOf(writerOf(cmd), found)
		},
	}
	cmd.Flags().StringVar(&url, "url", defaultStatusURL(e.getenv), "peerpodd's probe server")
	def := e.getenv("STATE_DIR")
	if def == "" {
		def = config.DefaultStateDir
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", def, "peerpodd's STATE_DIR, read when peerpodd does not answer")
	cmd.Flags().StringVarP(&output, "output", "o", outTable, "table or json")
	return cmd
}

// parsePodRef splits "ns/name" or "name" (namespace default).
func parsePodRef(ref string) (ns, name string, err error) {
	ns, name = "default", ref
	if i := strings.IndexByte(ref, '/'); i >= 0 {
		ns, name = ref[:i], ref[i+1:]
	}
	if ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("pod %q: want [NAMESPACE/]NAME", ref)
	}
	return ns, name, nil
}

// findVMs returns the pod's sandboxes (normally one).
func findVMs(sbs []sandbox.Status, ns, name string) []vmOf {
	var out []vmOf
	for _, s := range sbs {
		if s.PodNamespace != ns || s.PodName != name {
			continue
		}
		out = append(out, vmOf{Pod: ns + "/" + name, SandboxID: s.SandboxID, State: string(s.State),
			VMName: s.VMName, VMID: s.VMID, InstanceType: s.InstanceType, VMAddr: s.VMAddr, Error: s.Error})
	}
	return out
}

func writeVMOf(w io.Writer, vms []vmOf) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tSANDBOX\tSTATE\tVM\tVM ID\tTYPE\tADDRESS")
	for _, v := range vms {
		id := v.SandboxID
		if len(id) > 12 {
			id = id[:12]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Pod, id, v.State, v.VMName, dash(v.VMID), dash(v.InstanceType), dash(v.VMAddr))
	}
	return tw.Flush()
}
