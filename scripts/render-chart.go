// render-chart renders a Helm chart the way `helm template` does, for machines without helm:
// Go templates with the sprig functions plus Helm's include/toYaml/required, the chart's
// values.yaml merged with optional override files, and .Release/.Chart/.Template set as Helm
// sets them. It covers what deploy/helm/sluice uses; prefer `helm template` when available.
//
// Usage: GO111MODULE=off GOPATH=/usr/share/gocode go run scripts/render-chart.go CHART_DIR [VALUES.yaml...]
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

func readYAML(path string) map[string]interface{} {
	out := map[string]interface{}{}
	data, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	if err := yaml.Unmarshal(data, &out); err != nil {
		fail("%s: %v", path, err)
	}
	return out
}

// merge overlays src onto dst, recursively for maps (Helm's coalescing of values files).
func merge(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				dst[k] = merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "render-chart: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: render-chart CHART_DIR [VALUES.yaml...]")
	}
	dir := os.Args[1]
	chart := readYAML(filepath.Join(dir, "Chart.yaml"))
	values := readYAML(filepath.Join(dir, "values.yaml"))
	for _, extra := range os.Args[2:] {
		values = merge(values, readYAML(extra))
	}
	name, _ := chart["name"].(string)
	root := template.New("chart")
	funcs := sprig.TxtFuncMap()
	funcs["toYaml"] = func(v interface{}) string {
		data, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(data), "\n")
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	root.Funcs(funcs).Option("missingkey=zero")
	files, _ := filepath.Glob(filepath.Join(dir, "templates", "*"))
	sort.Strings(files)
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			fail("%v", err)
		}
		if _, err := root.New(filepath.Join(name, "templates", filepath.Base(f))).Parse(string(text)); err != nil {
			fail("%v", err)
		}
	}
	capital := map[string]interface{}{
		"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"],
	}
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasPrefix(base, "_") {
			continue
		}
		tname := filepath.Join(name, "templates", base)
		data := map[string]interface{}{
			"Values":   values,
			"Chart":    capital,
			"Release":  map[string]interface{}{"Name": "sluice", "Namespace": "sluice", "Service": "Helm"},
			"Template": map[string]interface{}{"Name": tname, "BasePath": filepath.Join(name, "templates")},
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, tname, data); err != nil {
			fail("%v", err)
		}
		out := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.TrimSpace(out) == "" {
			continue
		}
		fmt.Printf("---\n# Source: %s\n%s\n", tname, out)
	}
}
