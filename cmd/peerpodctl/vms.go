package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/config"
	"github.com/peerpod/peerpod/shim/daemon"
	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/shim/reconcile"
)

// journalOwners decides ownership from the journal in STATE_DIR with the
// rule peerpodd's sandbox manager uses: a VM is owned by a sandbox that may
// have one (provisioning, running, stopping) and whose record names it, or
// does not name any VM yet.
type journalOwners struct {
	dir string
}

func (o journalOwners) load() (map[string]*journal.Entry, error) {
	entries, err := journal.ReadDir(o.dir)
	if err != nil {
		// A corrupt record must not make its VM look orphaned.
		return nil, fmt.Errorf("journal %s: %w", o.dir, err)
	}
	out := make(map[string]*journal.Entry, len(entries))
	for _, e := range entries {
		out[e.SandboxID] = e
	}
	return out, nil
}

// owner returns the journal entry owning vm, or nil. A warm VM (no
// sandbox tag) is owned by the sandbox whose record names it; one no
// sandbox took is an orphan here (peerpodd's own pool is not in the journal).
func owner(entries map[string]*journal.Entry, vm provider.Instance) *journal.Entry {
	if vm.Tags[provider.TagWarm] == "true" {
		for _, e := range entries {
			if e.VMName == vm.Name && e.OwnsVM(vm.ID, vm.Name) {
				return e
			}
		}
		return nil
	}
	e, ok := entries[vm.Tags[provider.TagSandbox]]
	if !ok || !e.OwnsVM(vm.ID, vm.Name) {
		return nil
	}
	return e
}

// Owns implements reconcile.Owners, reading the journal afresh each time
// (the reconciler asks again right before each deletion). An unreadable
// journal owns everything: nothing is deleted on doubt.
func (o journalOwners) Owns(vm provider.Instance) bool {
	entries, err := o.load()
	if err != nil {
		return true
	}
	return owner(entries, vm) != nil
}

// vmRow is one VM as vms prints it.
type vmRow struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	IPs          []netip.Addr      `json:"ips,omitempty"`
	InstanceType string            `json:"instance_type,omitempty"`
	Created      time.Time         `json:"created,omitzero"`
	Tags         map[string]string `json:"tags,omitempty"`
	// Sandbox is the owning sandbox id; empty for an orphan.
	Sandbox string `json:"sandbox,omitempty"`
	// State is the owning sandbox's state.
	State  journal.State `json:"state,omitempty"`
	Orphan bool          `json:"orphan"`
}

// nodeTools is what vms and gc work with.
type nodeTools struct {
	cfg    *config.Config
	prov   provider.Provider
	owners journalOwners
}

func (e env) nodeTools(ctx context.Context) (*nodeTools, error) {
	cfg, err := e.loadConfig()
	if err != nil {
		return nil, err
	}
	prov, err := e.newProvider(ctx, cfg, e.getenv)
	if err != nil {
		return nil, fmt.Errorf("provider %s: %w", cfg.CloudProvider, err)
	}
	return &nodeTools{cfg: cfg, prov: prov, owners: journalOwners{dir: filepath.Join(cfg.StateDir, daemon.JournalDir)}}, nil
}

func (n *nodeTools) selector() map[string]string {
	return provider.NodeSelector(n.cfg.ClusterID, n.cfg.NodeName)
}

// listVMs lists this node's VMs (by its tags), each marked owned or orphan.
func (n *nodeTools) listVMs(ctx context.Context) ([]vmRow, error) {
	entries, err := n.owners.load()
	if err != nil {
		return nil, err
	}
	sel := n.selector()
	vms, err := n.prov.List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list VMs %s: %w", provider.FormatTags(sel), err)
	}
	rows := make([]vmRow, 0, len(vms))
	for _, vm := range vms {
		if !provider.Matches(vm.Tags, sel) {
			continue
		}
		r := vmRow{ID: vm.ID, Name: vm.Name, IPs: vm.IPs, InstanceType: vm.InstanceType, Created: vm.Created, Tags: vm.Tags, Orphan: true}
		if e := owner(entries, vm); e != nil {
			r.Sandbox, r.State, r.Orphan = e.SandboxID, e.State, false
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b vmRow) int { return strings.Compare(a.Name, b.Name) })
	return rows, nil
}

func newVMsCmd(e env) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "vms",
		Short: "List the provider's VMs of this node (by tags), orphans marked",
		Long: "vms builds the provider from the same environment as peerpodd (CLOUD_PROVIDER and its keys,\n" +
			"CLUSTER_ID, NODE_NAME) and marks every VM that no sandbox in STATE_DIR owns as an orphan.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			n, err := e.nodeTools(cmd.Context())
			if err != nil {
				return err
			}
			rows, err := n.listVMs(cmd.Context())
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(writerOf(cmd), rows)
			}
			return writeVMTable(writerOf(cmd), rows, time.Now())
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", outTable, "table or json")
	return cmd
}

func writeVMTable(w io.Writer, rows []vmRow, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tPOD\tIP\tTYPE\tAGE\tSANDBOX\tOWNER")
	for _, r := range rows {
		pod := r.Tags[provider.TagPodName]
		if ns := r.Tags[provider.TagPodNamespace]; ns != "" {
			pod = ns + "/" + pod
		}
		ip := ""
		if len(r.IPs) > 0 {
			ip = r.IPs[0].String()
		}
		own := "ORPHAN"
		if !r.Orphan {
			own = string(r.State)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, short(r.ID, 40), dash(pod), dash(ip), dash(r.InstanceType),
			age(now, r.Created), dash(short(r.Sandbox, 12)), own)
	}
	return tw.Flush()
}

// gcResult is what gc did (or would do).
type gcResult struct {
	DryRun bool `json:"dry_run"`
	// Delete are the orphans old enough to delete; Young are orphans
	// within the minimum age, left alone.
	Delete []vmRow `json:"delete"`
	Young  []vmRow `json:"young,omitempty"`
	// Deleted and Failed are set without --dry-run.
	Deleted []string          `json:"deleted,omitempty"`
	Failed  map[string]string `json:"failed,omitempty"`
}

// gc finds the orphans the reconciler would delete (this node's VMs no
// sandbox owns) and, unless dryRun, deletes those older than minAge,
// checking ownership again right before each deletion.
func (n *nodeTools) gc(ctx context.Context, dryRun bool, minAge time.Duration, now time.Time) (*gcResult, error) {
	rec, err := reconcile.New(n.prov, n.owners, reconcile.Options{Selector: n.selector(), Grace: max(minAge, time.Nanosecond)})
	if err != nil {
		return nil, err
	}
	if _, err := n.owners.load(); err != nil {
		return nil, err
	}
	orphans, err := rec.Scan(ctx)
	if err != nil {
		return nil, err
	}
	res := &gcResult{DryRun: dryRun}
	for _, o := range orphans {
		r := vmRow{ID: o.ID, Name: o.Name, IPs: o.IPs, InstanceType: o.InstanceType, Created: o.Created, Tags: o.Tags, Orphan: true}
		if !o.Created.IsZero() && now.Sub(o.Created) < minAge {
			res.Young = append(res.Young, r)
			continue
		}
		res.Delete = append(res.Delete, r)
	}
	if dryRun {
		return res, nil
	}
	for _, r := range res.Delete {
		if n.owners.Owns(provider.Instance{ID: r.ID, Name: r.Name, Tags: r.Tags}) {
			continue // a sandbox claimed it meanwhile
		}
		if err := n.prov.Delete(ctx, r.ID); err != nil {
			if res.Failed == nil {
				res.Failed = map[string]string{}
			}
			res.Failed[r.ID] = err.Error()
			continue
		}
		res.Deleted = append(res.Deleted, r.ID)
	}
	return res, nil
}

func newGCCmd(e env) *cobra.Command {
	var dryRun bool
	var output string
	var minAge time.Duration
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Delete this node's orphan VMs (what the reconciler would delete)",
		Long: "gc lists this node's VMs that no sandbox in STATE_DIR owns and deletes those older than\n" +
			"--min-age (default RECONCILE_GRACE). With --dry-run it only lists them.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			n, err := e.nodeTools(cmd.Context())
			if err != nil {
				return err
			}
			age := minAge
			if !cmd.Flags().Changed("min-age") {
				age = n.cfg.ReconcileGrace
			}
			if age < 0 {
				return fmt.Errorf("--min-age %v is negative", age)
			}
			res, err := n.gc(cmd.Context(), dryRun, age, time.Now())
			if err != nil {
				return err
			}
			w := writerOf(cmd)
			if output == outJSON {
				if err := writeJSON(w, res); err != nil {
					return err
				}
			} else {
				writeGC(w, res, age)
			}
			if len(res.Failed) > 0 {
				return fmt.Errorf("%d of %d deletions failed", len(res.Failed), len(res.Delete))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be deleted; delete nothing")
	cmd.Flags().DurationVar(&minAge, "min-age", config.DefaultReconcileGrace, "leave orphans younger than this (default RECONCILE_GRACE)")
	cmd.Flags().StringVarP(&output, "output", "o", outTable, "table or json")
	return cmd
}

func writeGC(w io.Writer, res *gcResult, minAge time.Duration) {
	verb := "deleting"
	if res.DryRun {
		verb = "would delete"
	}
	if len(res.Delete) == 0 {
		fmt.Fprintln(w, "no orphan VMs to delete")
	}
	for _, r := range res.Delete {
		status := ""
		if !res.DryRun {
			if msg, bad := res.Failed[r.ID]; bad {
				status = ": FAILED: " + msg
			} else if slices.Contains(res.Deleted, r.ID) {
				status = ": deleted"
			} else {
				status = ": skipped (owned again)"
			}
		}
		fmt.Fprintf(w, "%s %s (%s) sandbox %s%s\n", verb, r.Name, r.ID, dash(r.Tags[provider.TagSandbox]), status)
	}
	for _, r := range res.Young {
		fmt.Fprintf(w, "leaving %s (%s): orphan for less than %v\n", r.Name, r.ID, minAge)
	}
}
