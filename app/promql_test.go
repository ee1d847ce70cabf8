package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// Files of the operators' kit, relative to this package.
var (
	rulesFile     = filepath.Join("..", "deploy", "prometheus", "rules.yml")
	rulesTestFile = filepath.Join("..", "deploy", "prometheus", "rules_test.yml")
	dashboardFile = filepath.Join("..", "deploy", "grafana", "dashboards", "igmirror.json")
	runbookFile   = filepath.Join("..", "docs", "operations.md")
)

// targetLabels are added by Prometheus to every scraped series; a query
// may match on them although /metrics does not show them.
var targetLabels = []string{"instance", "job"}

// ruleFile is the part of a Prometheus rule file the checks read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// namedExpr is one PromQL expression and where it comes from.
type namedExpr struct{ where, expr string }

// scrapedNames starts the whole service, sends it a signed delivery and
// a probe (so that every family, histograms included, has samples), and
// returns what its /metrics holds: family name → label names seen.
func scrapedNames(t *testing.T) map[string][]string {
	t.Helper()
	ta := startApp(t, testConfig(t))
	if code, body := ta.post(sample(t, "inbound_text.json")); code != http.StatusOK {
		t.Fatalf("delivery: got %d %s", code, body)
	}
	if code, _ := ta.get(ta.base + "/readyz"); code != http.StatusOK {
		t.Fatalf("readyz: got %d", code)
	}
	ms := scrape(t, ta)
	out := map[string][]string{}
	for name, f := range ms {
		var labels []string
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(labels, l.GetName()) {
					labels = append(labels, l.GetName())
				}
			}
		}
		out[name] = labels
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			out[name+"_bucket"] = append(slices.Clone(labels), "le")
			out[name+"_sum"] = labels
			out[name+"_count"] = labels
		case dto.MetricType_SUMMARY:
			out[name+"_sum"] = labels
			out[name+"_count"] = labels
		}
	}
	return out
}

// alertRules reads rules.yml.
func alertRules(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	if len(rf.Groups) == 0 {
		t.Fatalf("%s: no rule groups", rulesFile)
	}
	return rf
}

// grafanaVar is a dashboard variable reference: $name, ${name} or [[name]].
var grafanaVar = regexp.MustCompile(`\$\{?(\w+)(?::\w+)?\}?|\[\[(\w+)\]\]`)

// grafanaToPromQL replaces Grafana's variables with what they expand to:
// a duration for the interval ones, a regexp for the template variables
// (which the dashboard only uses inside =~ matchers).
func grafanaToPromQL(expr string) string {
	return grafanaVar.ReplaceAllStringFunc(expr, func(v string) string {
		switch strings.Trim(v, "${}[]") {
		case "__rate_interval", "__interval", "__range":
			return "5m"
		case "__range_s", "__interval_ms":
			return "300"
		}
		return ".*"
	})
}

// labelValuesQuery is the templating form label_values(selector, label).
var labelValuesQuery = regexp.MustCompile(`^\s*label_values\((.*),\s*(\w+)\s*\)\s*$`)

// dashboardExprs collects every query of the dashboard: panel targets
// (rows' nested panels too) and template variables' label_values().
func dashboardExprs(t *testing.T) []namedExpr {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels     []dashPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []namedExpr
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				if tg.Expr != "" {
					out = append(out, namedExpr{"panel " + p.Title + " " + tg.RefID, tg.Expr})
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			// The older form: the query as a plain string.
			if err := json.Unmarshal(v.Query, &q.Query); err != nil {
				t.Fatalf("variable %s: query neither a string nor an object: %s", v.Name, v.Query)
			}
		}
		m := labelValuesQuery.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, q.Query)
			continue
		}
		out = append(out, namedExpr{"variable " + v.Name, m[1]})
	}
	return out
}

type dashPanel struct {
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"`
}

// TestPromQLNamesExist parses every PromQL expression of the alert rules
// and the dashboard with Prometheus's own parser and checks that each
// metric it names, and each label it matches on, is in a real scrape of
// the service: a renamed metric would otherwise leave an alert that can
// never fire and a panel that stays empty.
func TestPromQLNamesExist(t *testing.T) {
	scraped := scrapedNames(t)
	var exprs []namedExpr
	for _, g := range alertRules(t).Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, namedExpr{"rule " + r.Alert + r.Record, r.Expr})
		}
	}
	nRules := len(exprs)
	exprs = append(exprs, dashboardExprs(t)...)
	if nRules == 0 || len(exprs) == nRules {
		t.Fatalf("found %d rule and %d dashboard expressions, want some of each", nRules, len(exprs)-nRules)
	}
	p := parser.NewParser(parser.Options{})
	for _, e := range exprs {
		ast, err := p.ParseExpr(grafanaToPromQL(e.expr))
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", e.where, e.expr, err)
			continue
		}
		selectors := 0
		parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			selectors++
			labels, ok := scraped[vs.Name]
			if !ok {
				t.Errorf("%s: metric %q is not in the service's /metrics", e.where, vs.Name)
				return nil
			}
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" || slices.Contains(targetLabels, m.Name) {
					continue
				}
				if !slices.Contains(labels, m.Name) {
					t.Errorf("%s: %s has no label %q (it has %v)", e.where, vs.Name, m.Name, labels)
				}
			}
			return nil
		})
		if selectors == 0 {
			t.Errorf("%s: %q selects no metric", e.where, e.expr)
		}
	}
}

// githubAnchor is the anchor GitHub gives a markdown heading.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestAlertRunbooksAndTests checks that every alert has a runbook_url
// naming a section of docs/operations.md that exists, and a case in
// rules_test.yml where it fires and one where it does not.
func TestAlertRunbooksAndTests(t *testing.T) {
	doc, err := os.ReadFile(runbookFile)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			anchors[githubAnchor(h)] = true
		}
	}
	b, err := os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var rt struct {
		Tests []struct {
			Name          string `yaml:"name"`
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &rt); err != nil {
		t.Fatalf("%s: %v", rulesTestFile, err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range rt.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	alerts := 0
	for _, g := range alertRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			url := r.Annotations["runbook_url"]
			_, anchor, ok := strings.Cut(url, "docs/operations.md#")
			if !ok {
				t.Errorf("alert %s: runbook_url %q does not point into docs/operations.md", r.Alert, url)
			} else if !anchors[anchor] {
				t.Errorf("alert %s: runbook_url %q: docs/operations.md has no section with anchor %q", r.Alert, url, anchor)
			}
			if anchor != strings.ToLower(r.Alert) {
				t.Errorf("alert %s: runbook anchor %q, want the section named after the alert", r.Alert, anchor)
			}
			if !fires[r.Alert] {
				t.Errorf("alert %s: no case in rules_test.yml where it fires", r.Alert)
			}
			if !quiet[r.Alert] {
				t.Errorf("alert %s: no case in rules_test.yml where it does not fire", r.Alert)
			}
		}
	}
	if alerts == 0 {
		t.Fatal("rules.yml has no alert")
	}
}
