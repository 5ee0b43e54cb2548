package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

const dashboardPath = "../examples/grafana/consensus-dashboard.json"

var metricNameRE = regexp.MustCompile(`forge_consensus_[a-z_]+`)

type dashboard struct {
	Inputs        []dashboardInput `json:"__inputs"`
	SchemaVersion int              `json:"schemaVersion"`
	UID           string           `json:"uid"`
	Title         string           `json:"title"`
	Panels        []dashboardPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Definition string          `json:"definition"`
			Query      json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type dashboardInput struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	PluginID string `json:"pluginId"`
}

type dashboardPanel struct {
	ID      int              `json:"id"`
	Type    string           `json:"type"`
	Title   string           `json:"title"`
	Panels  []dashboardPanel `json:"panels"` // a row's collapsed panels
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatalf("reading dashboard: %v", err)
	}
	if !json.Valid(raw) {
		t.Fatalf("%s is not valid JSON", dashboardPath)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("decoding dashboard: %v", err)
	}
	return d
}

func TestDashboardTopLevel(t *testing.T) {
	d := loadDashboard(t)
	if d.SchemaVersion != 39 {
		t.Errorf("schemaVersion = %d, want 39", d.SchemaVersion)
	}
	if d.UID != "forge-consensus" {
		t.Errorf("uid = %q, want forge-consensus", d.UID)
	}
	if d.Title != "Forge Consensus" {
		t.Errorf("title = %q, want Forge Consensus", d.Title)
	}
	if !slices.ContainsFunc(d.Inputs, func(in dashboardInput) bool {
		return in.Name == "DS_PROMETHEUS" && in.Type == "datasource" && in.PluginID == "prometheus"
	}) {
		t.Errorf("__inputs has no Prometheus datasource DS_PROMETHEUS: %+v", d.Inputs)
	}
	found := false
	for _, v := range d.Templating.List {
		if v.Name != "node_id" {
			continue
		}
		found = true
		const want = "label_values(forge_consensus_term, node_id)"
		if v.Type != "query" || !strings.Contains(string(v.Query), want) {
			t.Errorf("node_id variable: type %q, query %s; want a query variable on %s", v.Type, v.Query, want)
		}
	}
	if !found {
		t.Error("no node_id template variable")
	}
	if len(d.Panels) == 0 {
		t.Error("no panels")
	}
}

// registeredSet returns the names of the metric families the package
// exports, with their types.
func registeredSet(t *testing.T) map[string]dto.MetricType {
	t.Helper()
	set := make(map[string]dto.MetricType)
	for _, mf := range gatherAll(t) {
		set[mf.GetName()] = mf.GetType()
	}
	return set
}

// unknownMetrics returns the forge_consensus_* names in expr that are not
// registered. The _bucket, _sum and _count series of a registered histogram
// count as registered.
func unknownMetrics(expr string, registered map[string]dto.MetricType) []string {
	var unknown []string
next:
	for _, name := range metricNameRE.FindAllString(expr, -1) {
		if _, ok := registered[name]; ok {
			continue
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && registered[base] == dto.MetricType_HISTOGRAM {
				continue next
			}
		}
		unknown = append(unknown, name)
	}
	return unknown
}

func TestDashboardUsesOnlyRegisteredMetrics(t *testing.T) {
	d := loadDashboard(t)
	registered := registeredSet(t)

	var exprs int
	check := func(where, expr string) {
		t.Helper()
		if !metricNameRE.MatchString(expr) {
			t.Errorf("%s: expression %q uses no forge_consensus metric", where, expr)
		}
		exprs++
		for _, name := range unknownMetrics(expr, registered) {
			t.Errorf("%s: unknown metric %s in %q", where, name, expr)
		}
	}
	var walk func(ps []dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %d %q has no targets", p.ID, p.Title)
			}
			for _, tg := range p.Targets {
				check("panel "+p.Title, tg.Expr)
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		check("variable "+v.Name, string(v.Query))
	}
	if exprs == 0 {
		t.Fatal("dashboard has no expressions")
	}
}

// TestUnknownMetrics guards the dashboard check: a renamed metric must be
// reported, histogram series of a registered histogram must not.
func TestUnknownMetrics(t *testing.T) {
	registered := registeredSet(t)
	for name, typ := range expectedTypes {
		if got, ok := registered[name]; !ok || got != typ {
			t.Errorf("registered %s: %v (present %v), want %v", name, got, ok, typ)
		}
	}
	if len(registered) != len(expectedTypes) {
		t.Errorf("registered %d metrics, want %d", len(registered), len(expectedTypes))
	}
	for expr, want := range map[string][]string{
		`max(forge_consensus_term{node_id="1"})`:                                nil,
		`rate(forge_consensus_operation_duration_seconds_bucket[5m])`:           nil,
		`rate(forge_consensus_snapshot_duration_seconds_count[5m])`:             nil,
		`rate(forge_consensus_ops_total[5m]) / forge_consensus_commit_index`:    {"forge_consensus_ops_total"},
		`forge_consensus_term_bucket + forge_consensus_operations_failed_count`: {"forge_consensus_term_bucket", "forge_consensus_operations_failed_count"},
	} {
		if got := unknownMetrics(expr, registered); !slices.Equal(got, want) {
			t.Errorf("unknownMetrics(%q) = %v, want %v", expr, got, want)
		}
	}
}
