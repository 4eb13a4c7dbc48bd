// Command render renders or lints the peerpod Helm chart offline, with the
// Helm library itself (the same template engine and linter as the helm CLI),
// so the plain manifests under deploy/manifests are produced by the chart
// and checked without network access or a helm binary.
//
//	render -chart DIR -values FILE [-namespace NS] [-release NAME] -out FILE
//	render -chart DIR -values FILE -lint
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"sigs.k8s.io/yaml"
)

func main() {
	chartDir := flag.String("chart", "", "chart directory")
	valuesFile := flag.String("values", "", "values file layered over the chart's values.yaml")
	namespace := flag.String("namespace", "peerpod-system", "release namespace")
	release := flag.String("release", "peerpod", "release name")
	out := flag.String("out", "", "file to write the rendered manifests to (- for stdout)")
	doLint := flag.Bool("lint", false, "lint the chart with the values instead of rendering")
	flag.Parse()
	if err := run(*chartDir, *valuesFile, *namespace, *release, *out, *doLint); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func run(chartDir, valuesFile, namespace, release, out string, doLint bool) error {
	if chartDir == "" {
		return fmt.Errorf("-chart is required")
	}
	vals := map[string]any{}
	if valuesFile != "" {
		v, err := chartutil.ReadValuesFile(valuesFile)
		if err != nil {
			return fmt.Errorf("values %s: %w", valuesFile, err)
		}
		vals = v.AsMap()
	}
	if doLint {
		res := lint.AllWithKubeVersion(chartDir, vals, namespace, nil)
		failed := false
		for _, m := range res.Messages {
			fmt.Fprintf(os.Stderr, "%s\n", m)
			if m.Severity >= support.WarningSev {
				failed = true
			}
		}
		if failed {
			return fmt.Errorf("lint %s with %s: findings above", chartDir, valuesFile)
		}
		// helm's lint mode only logs a template's fail; rendering for real
		// catches those, and every document must be a Kubernetes object.
		docs, err := render(chartDir, vals, namespace, release)
		if err != nil {
			return err
		}
		for name, body := range docs {
			for i, doc := range strings.Split(body, "\n---") {
				if strings.TrimSpace(doc) == "" {
					continue
				}
				var obj struct {
					APIVersion string `json:"apiVersion"`
					Kind       string `json:"kind"`
					Metadata   struct {
						Name string `json:"name"`
					} `json:"metadata"`
				}
				if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
					return fmt.Errorf("%s document %d: %w", name, i, err)
				}
				if obj.APIVersion == "" || obj.Kind == "" || obj.Metadata.Name == "" {
					return fmt.Errorf("%s document %d: apiVersion, kind or metadata.name missing", name, i)
				}
			}
		}
		fmt.Printf("lint %s with %s: ok\n", chartDir, valuesFile)
		return nil
	}
	if out == "" {
		return fmt.Errorf("-out is required")
	}
	files, err := render(chartDir, vals, namespace, release)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# Rendered from the peerpod Helm chart with %s; do not edit (make manifests).\n", filepath.Base(valuesFile))
	// Plain manifests create the release namespace themselves.
	fmt.Fprintf(&buf, "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", namespace)
	for _, name := range names {
		fmt.Fprintf(&buf, "---\n# Source: %s\n%s\n", name, files[name])
	}
	if out == "-" {
		_, err = os.Stdout.Write(buf.Bytes())
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

// render renders the chart with vals; it returns the non-empty YAML
// templates by name (chart name prefix removed).
func render(chartDir string, vals map[string]any, namespace, release string) (map[string]string, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", chartDir, err)
	}
	if err := chartutil.ProcessDependenciesWithMerge(ch, vals); err != nil {
		return nil, fmt.Errorf("chart dependencies: %w", err)
	}
	opts := chartutil.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}
	rv, err := chartutil.ToRenderValues(ch, vals, opts, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	out := map[string]string{}
	for name, body := range files {
		body = strings.TrimSpace(body)
		if !strings.HasSuffix(name, ".yaml") || body == "" {
			continue
		}
		out[strings.TrimPrefix(name, ch.Name()+"/")] = body
	}
	return out, nil
}
