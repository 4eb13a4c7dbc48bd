// Package netnsstate describes what a network namespace holds (links,
// addresses, routes, permanent neighbours, rules, qdiscs and ingress
// filters), as text, so tests can check that a namespace is left exactly as
// it was.
package netnsstate

import (
	"fmt"
	"os/exec"
	"strings"
)

// Of returns the state of the named network namespace; dev is the
// interface whose ingress filters are listed (the pod's CNI interface).
func Of(ns, dev string) (string, error) {
	var b strings.Builder
	for _, c := range [][]string{
		{"ip", "-n", ns, "-br", "link"},
		{"ip", "-n", ns, "-br", "addr"},
		{"ip", "-n", ns, "route", "show", "table", "all"},
		{"ip", "-n", ns, "neigh", "show", "nud", "permanent"},
		{"ip", "-n", ns, "rule"},
		{"tc", "-n", ns, "qdisc", "show"},
		{"tc", "-n", ns, "filter", "show", "dev", dev, "ingress"},
	} {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%s: %w\n%s", strings.Join(c, " "), err, out)
		}
		fmt.Fprintf(&b, "$ %s\n%s", strings.Join(c, " "), out)
	}
	return b.String(), nil
}
