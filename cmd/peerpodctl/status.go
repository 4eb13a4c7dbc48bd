package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/peerpod/peerpod/shim/config"
	"github.com/peerpod/peerpod/shim/daemon"
	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/shim/ops"
	"github.com/peerpod/peerpod/shim/sandbox"
)

// statusReport is what status prints: the daemon's /status document, or
// the journal when peerpodd does not answer.
type statusReport struct {
	daemon.Status
	// Source is "peerpodd" (live) or "journal" (peerpodd not reachable).
	Source string `json:"source"`
	// Unreachable is why peerpodd's status could not be read.
	Unreachable string `json:"unreachable,omitempty"`
}

func newStatusCmd(e env) *cobra.Command {
	var url, stateDir, output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List this node's sandboxes: state, VM, age, attester",
		Long: "status reads peerpodd's /status endpoint; when peerpodd does not answer it reads the\n" +
			"journal in STATE_DIR instead (no connection counts then).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			rep, err := getStatus(cmd.Context(), url, stateDir, e.getenv)
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(writerOf(cmd), rep)
			}
			return writeStatusTable(writerOf(cmd), rep, time.Now())
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

// getStatus asks peerpodd, falling back to the journal.
func getStatus(ctx context.Context, url, stateDir string, getenv func(string) string) (*statusReport, error) {
	st, herr := fetchStatus(ctx, url)
	if herr == nil {
		return &statusReport{Status: *st, Source: "peerpodd"}, nil
	}
	entries, err := journal.ReadDir(filepath.Join(stateDir, daemon.JournalDir))
	if err != nil && len(entries) == 0 {
		return nil, fmt.Errorf("peerpodd at %s: %v; journal: %w", url, herr, err)
	}
	rep := &statusReport{Source: "journal", Unreachable: herr.Error(),
		Status: daemon.Status{Node: getenv("NODE_NAME"), Cluster: getenv("CLUSTER_ID"), Provider: getenv("CLOUD_PROVIDER"), Attester: getenv("ATTESTER")}}
	for _, en := range entries {
		en.Initdata = ""
		rep.Sandboxes = append(rep.Sandboxes, sandbox.Status{Entry: *en})
	}
	return rep, nil
}

func fetchStatus(ctx context.Context, url string) (*daemon.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var st daemon.Status
	if err := getJSON(ctx, strings.TrimRight(url, "/")+ops.PathStatus, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

func getJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeStatusTable(w io.Writer, rep *statusReport, now time.Time) error {
	fmt.Fprintf(w, "node %s  cluster %s  provider %s  attester %s  (from %s)\n",
		dash(rep.Node), dash(rep.Cluster), dash(rep.Provider), dash(rep.Attester), rep.Source)
	if rep.Unreachable != "" {
		fmt.Fprintf(w, "peerpodd not reachable: %s\n", rep.Unreachable)
	}
	if wp := rep.WarmPool; wp != nil {
		fmt.Fprintf(w, "warm pool: %d ready, %d booting (size %d)\n", wp.Ready, wp.Booting, wp.Size)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SANDBOX\tPOD\tSTATE\tAGE\tVM\tVM ID\tADDRESS\tTYPE\tCONNS\tERROR")
	for _, s := range rep.Sandboxes {
		pod := s.PodName
		if s.PodNamespace != "" {
			pod = s.PodNamespace + "/" + s.PodName
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", short(s.SandboxID, 12), dash(pod), s.State,
			age(now, s.Created), dash(s.VMName), dash(s.VMID), dash(s.VMAddr), dash(s.InstanceType), s.Connections, short(s.Error, 60))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// age renders how long ago t was, like kubectl (45s, 3m, 2h, 4d).
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
