package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/peerpod/peerpod/api/initdata"
	"github.com/peerpod/peerpod/policygen"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Agent policy tools",
	}
	cmd.AddCommand(newPolicyGenerateCmd())
	return cmd
}

func newPolicyGenerateCmd() *cobra.Command {
	var (
		file, out, initdataOut string
		offline, insecure      bool
		opts                   policygen.Options
	)
	cmd := &cobra.Command{
		Use:   "generate -f pod.yaml",
		Short: "Generate the agent policy of a pod and print its initdata annotation",
		Long: `Generate reads a Pod (or Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
CronJob) with the ConfigMaps and Secrets its envFrom references, pins every
image by digest (asking its registry, or requiring name@sha256:... with
--offline), and derives the policy: commands, environment, working
directory, user, security context, mounts and exec-probe commands. It prints
the initdata annotation to add to the pod; -o writes the Rego policy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("-f is required (a pod YAML file, or - for stdin)")
			}
			doc, err := readInput(cmd.InOrStdin(), file)
			if err != nil {
				return err
			}
			if offline {
				opts.Resolver = policygen.OfflineResolver{}
			} else {
				opts.Resolver = &policygen.RegistryResolver{Insecure: insecure}
			}
			res, err := policygen.Generate(cmd.Context(), doc, opts)
			if err != nil {
				return err
			}
			if out != "" {
				if err := writeFileAtomic(out, []byte(res.Policy)); err != nil {
					return err
				}
			}
			if initdataOut != "" {
				if err := writeFileAtomic(initdataOut, res.Initdata); err != nil {
					return err
				}
			}
			errw := cmd.ErrOrStderr()
			for _, w := range res.Warnings {
				fmt.Fprintf(errw, "warning: %s\n", w)
			}
			for from, to := range res.Pinned {
				fmt.Fprintf(errw, "image %s is not pinned: set it to %s in the pod (the policy allows only that)\n", from, to)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "# %s: initdata %s digest %s\n", res.Workload, opts.Algorithm, hex.EncodeToString(res.Digest))
			fmt.Fprintf(w, "metadata:\n  annotations:\n    %s: %s\n", initdata.Annotation, res.Annotation)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "pod YAML file (- for stdin)")
	f.StringVarP(&out, "output", "o", "", "write the Rego policy to this file")
	f.StringVar(&initdataOut, "initdata-out", "", "write the initdata TOML to this file")
	f.BoolVar(&offline, "offline", false, "ask no registry: images must be name@sha256:... and containers must set command")
	f.BoolVar(&insecure, "insecure-registry", false, "allow plain-HTTP registries")
	f.StringVar(&opts.Namespace, "namespace", "", "namespace the pod runs in (default: the YAML's, or default)")
	f.BoolVar(&opts.AnyNamespace, "any-namespace", false, "do not check the namespace")
	f.BoolVar(&opts.RedactStdout, "redact-stdout", false, "deny reading container output (kubectl logs shows nothing)")
	f.BoolVar(&opts.AllowStdin, "allow-stdin", false, "allow writing to container stdin (kubectl attach -i)")
	f.BoolVar(&opts.AllowUpdate, "allow-update", false, "allow UpdateContainer (in-place resize)")
	f.StringVar(&opts.Algorithm, "algorithm", "sha256", "initdata digest algorithm: sha256, sha384 or sha512")
	return cmd
}

// readInput reads path, or in when path is "-".
func readInput(in io.Reader, path string) ([]byte, error) {
	if path == "-" {
		b, err := io.ReadAll(io.LimitReader(in, 64<<20))
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory, so a failure leaves no half-written file.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(dirOf(path), ".peerpodctl-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func dirOf(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			if i == 0 {
				return "/"
			}
			return path[:i]
		}
	}
	return "."
}
