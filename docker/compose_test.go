package docker

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/shardproxy/shardproxy/proxy/config"
)

// No Docker engine runs here, so these tests check statically that
// compose.yaml and the files it mounts agree: every proxy config loads with
// the project's own loader, its ports are published, its shards are compose
// services running PostgreSQL, and Prometheus, Grafana and the app point at
// the right services and ports.

type composeFile struct {
	Name     string             `yaml:"name"`
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string            `yaml:"image"`
	Build       *build            `yaml:"build"`
	Command     []string          `yaml:"command"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   dependsOn         `yaml:"depends_on"`
	Profiles    []string          `yaml:"profiles"`
}

type build struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

// dependsOn accepts both the list and the map form.
type dependsOn []string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		*d = l
	case yaml.MappingNode:
		var m map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			switch v.Condition {
			case "service_started", "service_healthy", "service_completed_successfully":
			default:
				return fmt.Errorf("depends_on %s: unknown condition %q", k, v.Condition)
			}
			*d = append(*d, k)
		}
		slices.Sort(*d)
	default:
		return fmt.Errorf("line %d: depends_on must be a list or a map", n.Line)
	}
	return nil
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	if len(c.Services) == 0 {
		t.Fatal("compose.yaml has no services")
	}
	return c
}

// mount is one entry of a service's volumes (short syntax).
type mount struct {
	source, target string
	bind           bool // source is a path (else a named volume)
}

func mounts(t *testing.T, name string, s service) []mount {
	t.Helper()
	var out []mount
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 || len(parts) == 3 && parts[2] != "ro" && parts[2] != "rw" {
			t.Errorf("service %s: volume %q is not source:target[:ro]", name, v)
			continue
		}
		src := parts[0]
		out = append(out, mount{source: src, target: parts[1], bind: strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/")})
	}
	return out
}

// containerPorts returns the published container ports of a service.
func containerPorts(t *testing.T, name string, s service) map[int]bool {
	t.Helper()
	out := map[int]bool{}
	for _, p := range s.Ports {
		parts := strings.Split(p, ":")
		if len(parts) != 2 {
			t.Errorf("service %s: port %q is not host:container", name, p)
			continue
		}
		c, err := strconv.Atoi(parts[1])
		if err != nil {
			t.Errorf("service %s: port %q: %v", name, p, err)
			continue
		}
		out[c] = true
	}
	return out
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

// flagValue returns the value after name in a command, or "".
func flagValue(cmd []string, name string) string {
	for i, a := range cmd {
		if a == name && i+1 < len(cmd) {
			return cmd[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// proxyService is a compose service running shardproxy with its config.
type proxyService struct {
	name string
	svc  service
	cfg  config.Config
	file string
}

const proxyConfigPath = "/etc/shardproxy/shardproxy.yaml"

func proxies(t *testing.T, c composeFile) []proxyService {
	t.Helper()
	var out []proxyService
	for name, s := range c.Services {
		for _, m := range mounts(t, name, s) {
			if m.target != proxyConfigPath {
				continue
			}
			cfg, err := config.Load(m.source)
			if err != nil {
				t.Errorf("service %s mounts %s: %v", name, m.source, err)
				continue
			}
			out = append(out, proxyService{name: name, svc: s, cfg: cfg, file: filepath.Clean(m.source)})
		}
	}
	slices.SortFunc(out, func(a, b proxyService) int { return strings.Compare(a.name, b.name) })
	return out
}

func TestComposeFilesExist(t *testing.T) {
	c := loadCompose(t)
	for name, s := range c.Services {
		if s.Image == "" && s.Build == nil {
			t.Errorf("service %s has neither image nor build", name)
		}
		if s.Build != nil {
			df := filepath.Join(s.Build.Context, s.Build.Dockerfile)
			if _, err := os.Stat(df); err != nil {
				t.Errorf("service %s: dockerfile: %v", name, err)
			}
			if _, err := os.Stat(filepath.Join(s.Build.Context, "go.mod")); err != nil {
				t.Errorf("service %s: build context %s is not the repository root: %v", name, s.Build.Context, err)
			}
		}
		for _, m := range mounts(t, name, s) {
			if m.bind {
				if _, err := os.Stat(m.source); err != nil {
					t.Errorf("service %s mounts a missing file: %v", name, err)
				}
			} else if _, ok := c.Volumes[m.source]; !ok {
				t.Errorf("service %s uses volume %q, not declared under volumes:", name, m.source)
			}
			if strings.HasSuffix(m.source, ".sh") {
				if st, err := os.Stat(m.source); err == nil && st.Mode()&0o111 == 0 {
					t.Errorf("service %s mounts script %s, which is not executable", name, m.source)
				}
			}
		}
		for _, d := range s.DependsOn {
			if _, ok := c.Services[d]; !ok {
				t.Errorf("service %s depends on unknown service %s", name, d)
			}
		}
		hostPorts := map[string]string{}
		for _, p := range s.Ports {
			hp := strings.Split(p, ":")[0]
			if other, dup := hostPorts[hp]; dup {
				t.Errorf("host port %s published twice (%s, %s)", hp, other, name)
			}
			hostPorts[hp] = name
		}
	}
	// Host ports are unique across services too.
	seen := map[string]string{}
	for name, s := range c.Services {
		for _, p := range s.Ports {
			hp := strings.Split(p, ":")[0]
			if other, ok := seen[hp]; ok && other != name {
				t.Errorf("host port %s is published by %s and %s", hp, other, name)
			}
			seen[hp] = name
		}
	}
}

func TestProxyConfigs(t *testing.T) {
	c := loadCompose(t)
	ps := proxies(t, c)
	if len(ps) != 3 {
		t.Fatalf("%d proxy services, want 3", len(ps))
	}
	// Every proxy config in docker/ is used.
	files, _ := filepath.Glob("proxy*.yaml")
	for _, f := range files {
		if !slices.ContainsFunc(ps, func(p proxyService) bool { return p.file == f }) {
			t.Errorf("%s is not mounted by any service", f)
		}
	}
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	exposed := map[int]bool{}
	for _, m := range regexp.MustCompile(`(?m)^EXPOSE (.*)$`).FindAllStringSubmatch(string(dockerfile), -1) {
		for _, f := range strings.Fields(m[1]) {
			n, _ := strconv.Atoi(f)
			exposed[n] = true
		}
	}
	nodeIDs := map[int]string{}
	var shardsOf [][]config.Shard
	leaders := 0
	for _, p := range ps {
		if got := flagValue(p.svc.Command, "--config"); got != proxyConfigPath {
			t.Errorf("%s: --config %q, want the mounted %s", p.name, got, proxyConfigPath)
		}
		ports := containerPorts(t, p.name, p.svc)
		for _, addr := range []string{p.cfg.Listen, p.cfg.AdminListen} {
			if addr == "" {
				t.Errorf("%s (%s): listen and admin_listen must be set", p.name, p.file)
				continue
			}
			host, _, _ := net.SplitHostPort(addr)
			if host != "0.0.0.0" && host != "" {
				t.Errorf("%s: %s listens on %s, unreachable from other containers", p.name, p.file, addr)
			}
			if !ports[port(t, addr)] {
				t.Errorf("%s: %s port %d is not published (ports %v)", p.name, p.file, port(t, addr), p.svc.Ports)
			}
			if !exposed[port(t, addr)] {
				t.Errorf("Dockerfile does not EXPOSE %d (%s of %s)", port(t, addr), addr, p.file)
			}
		}
		if other, dup := nodeIDs[p.cfg.NodeID]; dup {
			t.Errorf("%s and %s both have node_id %d", other, p.name, p.cfg.NodeID)
		}
		nodeIDs[p.cfg.NodeID] = p.name
		checkRaft(t, c, ps, p, exposed)
		if j := p.cfg.Raft.Join; len(j) == 0 {
			leaders++
		}
		// The admin console works: admin users are users with a password.
		if len(p.cfg.AdminUsers) == 0 {
			t.Errorf("%s: no admin_users, so the admin console (database shardproxy) is closed", p.file)
		}
		for _, a := range p.cfg.AdminUsers {
			if u, ok := p.cfg.LookupUser(a); !ok || u.Password == "" {
				t.Errorf("%s: admin user %q is not a user with a password", p.file, a)
			}
		}
		if p.cfg.AdminToken == "" || p.cfg.AdminToken != ps[0].cfg.AdminToken {
			t.Errorf("%s: admin_token must be set and the same on every proxy (forwarded writes carry it)", p.file)
		}
		if len(p.cfg.Sharding.Tables) == 0 {
			t.Errorf("%s: no sharding section: the app's tables would all live on one shard", p.file)
		}
		checkShards(t, c, p)
		shardsOf = append(shardsOf, p.cfg.Shards)
	}
	if leaders != 1 {
		t.Errorf("%d proxies bootstrap Raft (no raft.join), want exactly 1", leaders)
	}
	for i := 1; i < len(ps); i++ {
		if fmt.Sprint(ps[i].cfg.Sharding) != fmt.Sprint(ps[0].cfg.Sharding) {
			t.Errorf("%s and %s have different sharding sections", ps[0].name, ps[i].name)
		}
	}
	for i := 1; i < len(shardsOf); i++ {
		if fmt.Sprint(shardsOf[i]) != fmt.Sprint(shardsOf[0]) {
			t.Errorf("%s and %s list different shards: %v vs %v", ps[0].name, ps[i].name, shardsOf[0], shardsOf[i])
		}
	}
}

// checkRaft checks a proxy's raft section: its log is on a volume, it
// advertises its own service name on the port it binds (exposed by the
// image), its admin API is advertised under its own name, and it joins
// another proxy's admin port (and starts after it).
func checkRaft(t *testing.T, c composeFile, ps []proxyService, p proxyService, exposed map[int]bool) {
	t.Helper()
	r := p.cfg.Raft
	if !r.Enabled() {
		t.Errorf("%s: no raft.dir: the proxies would not share a topology", p.file)
		return
	}
	onVolume := false
	for _, m := range mounts(t, p.name, p.svc) {
		if !m.bind && strings.HasPrefix(r.Dir+"/", strings.TrimSuffix(m.target, "/")+"/") {
			onVolume = true
		}
	}
	if !onVolume {
		t.Errorf("%s: raft.dir %s is not on a named volume of %s (the topology would not survive a restart)", p.file, r.Dir, p.name)
	}
	if h, _, err := net.SplitHostPort(r.Advertise); err != nil || h != p.name {
		t.Errorf("%s: raft.advertise %q must be %s:<port>", p.file, r.Advertise, p.name)
	} else if r.Bind == "" || port(t, r.Bind) != port(t, r.Advertise) {
		t.Errorf("%s: raft.bind %q and raft.advertise %q use different ports", p.file, r.Bind, r.Advertise)
	} else if !exposed[port(t, r.Advertise)] {
		t.Errorf("Dockerfile does not EXPOSE the Raft port %d", port(t, r.Advertise))
	}
	if u, err := url.Parse(p.cfg.AdminAdvertise); err != nil || u.Hostname() != p.name || u.Port() != strconv.Itoa(port(t, p.cfg.AdminListen)) {
		t.Errorf("%s: admin_advertise %q must be http://%s:<admin port>", p.file, p.cfg.AdminAdvertise, p.name)
	}
	for _, j := range r.Join {
		u, err := url.Parse(j)
		if err != nil || u.Host == "" {
			t.Errorf("%s: raft.join %q is not a URL", p.file, j)
			continue
		}
		i := slices.IndexFunc(ps, func(q proxyService) bool { return q.name == u.Hostname() })
		switch {
		case i < 0 || ps[i].name == p.name:
			t.Errorf("%s: raft.join %s is not another proxy service", p.file, j)
		case u.Port() != strconv.Itoa(port(t, ps[i].cfg.AdminListen)):
			t.Errorf("%s: raft.join %s does not use %s's admin port (%s)", p.file, j, ps[i].name, ps[i].cfg.AdminListen)
		case !slices.Contains(p.svc.DependsOn, ps[i].name):
			t.Errorf("%s joins %s but does not depend on it", p.name, ps[i].name)
		}
	}
}

// checkShards checks that each shard endpoint of a proxy is a PostgreSQL
// service of the compose file, that replicas stream from their shard's
// primary through a slot the primary creates, and that the proxy's server
// credentials are the servers'.
func checkShards(t *testing.T, c composeFile, p proxyService) {
	t.Helper()
	if len(p.cfg.Shards) != 2 {
		t.Errorf("%s: %d shards, want 2", p.file, len(p.cfg.Shards))
	}
	pg := func(e config.Endpoint) (service, bool) {
		s, ok := c.Services[e.Host]
		if !ok {
			t.Errorf("%s: shard host %s is not a compose service", p.file, e.Host)
			return s, false
		}
		if !strings.HasPrefix(s.Image, "postgres:") {
			t.Errorf("%s: %s runs %q, not postgres", p.file, e.Host, s.Image)
		}
		srvPort := 5432
		for i, a := range s.Command {
			if v, ok := strings.CutPrefix(a, "port="); ok && i > 0 && s.Command[i-1] == "-c" {
				srvPort, _ = strconv.Atoi(v)
			}
		}
		if e.Port != srvPort {
			t.Errorf("%s: %s port %d, but the server listens on %d", p.file, e.Host, e.Port, srvPort)
		}
		for _, setting := range []string{"wal_level=logical", "max_prepared_transactions=100"} {
			if !slices.Contains(s.Command, setting) {
				t.Errorf("%s: %s is not started with %s", p.file, e.Host, setting)
			}
		}
		if s.Environment["POSTGRES_USER"] != p.cfg.Server.User || s.Environment["POSTGRES_PASSWORD"] != p.cfg.Server.Password {
			t.Errorf("%s: server credentials %s/%s do not match %s's POSTGRES_USER/POSTGRES_PASSWORD",
				p.file, p.cfg.Server.User, p.cfg.Server.Password, e.Host)
		}
		if !slices.Contains(p.svc.DependsOn, e.Host) && !strings.Contains(e.Host, "replica") {
			t.Errorf("%s does not depend on shard primary %s", p.name, e.Host)
		}
		return s, true
	}
	for _, sh := range p.cfg.Shards {
		primary, ok := pg(sh.Primary)
		if !ok {
			continue
		}
		if primary.Environment["PRIMARY_HOST"] != "" {
			t.Errorf("%s: primary of %s (%s) is configured as a replica", p.file, sh.Name, sh.Primary.Host)
		}
		slots := strings.Fields(primary.Environment["REPLICA_SLOTS"])
		if len(slots) != len(sh.Replicas) {
			t.Errorf("%s: shard %s has %d replicas, its primary creates slots %v", p.file, sh.Name, len(sh.Replicas), slots)
		}
		for _, r := range sh.Replicas {
			rs, ok := pg(r)
			if !ok {
				continue
			}
			if rs.Environment["PRIMARY_HOST"] != sh.Primary.Host || rs.Environment["PRIMARY_PORT"] != strconv.Itoa(sh.Primary.Port) {
				t.Errorf("%s: replica %s of %s streams from %s:%s", p.file, r.Host, sh.Name, rs.Environment["PRIMARY_HOST"], rs.Environment["PRIMARY_PORT"])
			}
			if !slices.Contains(slots, rs.Environment["REPLICA_SLOT"]) {
				t.Errorf("%s: replica %s uses slot %q, which %s does not create (%v)", p.file, r.Host, rs.Environment["REPLICA_SLOT"], sh.Primary.Host, slots)
			}
			if len(rs.Entrypoint) != 1 || !slices.ContainsFunc(mounts(t, r.Host, rs), func(m mount) bool { return m.target == rs.Entrypoint[0] }) {
				t.Errorf("replica %s: entrypoint %v is not a mounted script", r.Host, rs.Entrypoint)
			}
		}
	}
}

func TestAppPointsAtProxies(t *testing.T) {
	c := loadCompose(t)
	ps := proxies(t, c)
	apps := 0
	for name, s := range c.Services {
		dsn, ok := s.Environment["SOCIALAPP_DSN"]
		if !ok {
			continue
		}
		apps++
		u, err := url.Parse(dsn)
		if err != nil {
			t.Errorf("%s: SOCIALAPP_DSN: %v", name, err)
			continue
		}
		hosts := strings.Split(u.Host, ",")
		if len(hosts) != len(ps) {
			t.Errorf("%s: DSN lists %d hosts, want every proxy (%d)", name, len(hosts), len(ps))
		}
		for _, h := range hosts {
			i := slices.IndexFunc(ps, func(p proxyService) bool { return strings.HasPrefix(h, p.name+":") })
			if i < 0 {
				t.Errorf("%s: DSN host %s is not a proxy service", name, h)
				continue
			}
			if h != fmt.Sprintf("%s:%d", ps[i].name, port(t, ps[i].cfg.Listen)) {
				t.Errorf("%s: DSN host %s, but %s listens on %s", name, h, ps[i].name, ps[i].cfg.Listen)
			}
			pw, _ := u.User.Password()
			user, ok := ps[i].cfg.LookupUser(u.User.Username())
			if !ok || user.Password != pw {
				t.Errorf("%s: DSN user %s is not configured with that password in %s", name, u.User.Username(), ps[i].file)
			}
		}
		db := strings.TrimPrefix(u.Path, "/")
		for _, sh := range ps[0].cfg.Shards {
			if got := c.Services[sh.Primary.Host].Environment["POSTGRES_DB"]; got != db {
				t.Errorf("%s: DSN database %q, but %s creates %q", name, db, sh.Primary.Host, got)
			}
		}
		if len(s.Command) == 0 || !slices.Contains([]string{"serve", "migrate", "seed", "load"}, s.Command[0]) {
			t.Errorf("%s: command %v is not a socialapp command", name, s.Command)
		}
		if s.Command[0] == "serve" {
			addr := flagValue(s.Command, "--listen")
			if !containerPorts(t, name, s)[port(t, addr)] {
				t.Errorf("%s listens on %s but does not publish it", name, addr)
			}
		}
		if s.Command[0] == "load" {
			u, err := url.Parse(flagValue(s.Command, "--url"))
			if err != nil || c.Services[u.Hostname()].Command == nil || c.Services[u.Hostname()].Command[0] != "serve" {
				t.Errorf("%s: --url %s is not the app service", name, flagValue(s.Command, "--url"))
			}
		}
	}
	if apps < 3 {
		t.Errorf("%d services run the social app, want at least migrate, socialapp and seed", apps)
	}
}

func TestMonitoring(t *testing.T) {
	c := loadCompose(t)
	ps := proxies(t, c)
	var prom struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, "prometheus/prometheus.yml", &prom)
	var targets []string
	for _, sc := range prom.ScrapeConfigs {
		if sc.JobName != "shardproxy" {
			continue
		}
		if sc.MetricsPath != "/metrics" {
			t.Errorf("shardproxy job scrapes %q", sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	var want []string
	for _, p := range ps {
		want = append(want, fmt.Sprintf("%s:%d", p.name, port(t, p.cfg.AdminListen)))
	}
	slices.Sort(targets)
	if !slices.Equal(targets, want) {
		t.Errorf("Prometheus scrapes %v, want every proxy's admin port %v", targets, want)
	}
	checkMounted(t, c, "prometheus", "./prometheus/prometheus.yml", "/etc/prometheus/prometheus.yml")
	if !slices.Contains(c.Services["prometheus"].Command, "--config.file=/etc/prometheus/prometheus.yml") {
		t.Errorf("prometheus does not read the mounted config: %v", c.Services["prometheus"].Command)
	}

	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	readYAML(t, "grafana/provisioning/datasources/prometheus.yaml", &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Fatalf("grafana datasource %+v, want prometheus at http://prometheus:9090", ds.Datasources)
	}
	if !containerPorts(t, "prometheus", c.Services["prometheus"])[9090] {
		t.Error("prometheus does not publish 9090")
	}
	var dp struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "grafana/provisioning/dashboards/shardproxy.yaml", &dp)
	checkMounted(t, c, "grafana", "./grafana/provisioning", "/etc/grafana/provisioning")
	if len(dp.Providers) != 1 {
		t.Fatalf("grafana dashboard providers: %+v", dp.Providers)
	}
	checkMounted(t, c, "grafana", "./grafana/dashboards", dp.Providers[0].Options.Path)

	data, err := os.ReadFile("grafana/dashboards/shardproxy.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var exprs strings.Builder
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != ds.Datasources[0].UID || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %q, %d queries", p.Title, p.Datasource.UID, len(p.Targets))
		}
		for _, q := range p.Targets {
			exprs.WriteString(q.Expr + "\n")
		}
	}
	// The dashboard covers what the issue asks for: connections, pools,
	// latency by route kind, errors, replica lag, moves.
	for _, m := range []string{"shardproxy_clients_active", "shardproxy_server_connections", "shardproxy_pool_wait_seconds_bucket",
		"shardproxy_query_duration_seconds_bucket", "sum by (le, kind)", "shardproxy_errors_total",
		"shardproxy_replica_lag_seconds", "shardproxy_rebalance_moves_in_phase"} {
		if !strings.Contains(exprs.String(), m) {
			t.Errorf("dashboard has no panel using %s", m)
		}
	}
	// Every metric the dashboard queries is one the code registers.
	registered := registeredMetrics(t)
	for _, m := range regexp.MustCompile(`\bshardproxy_[a-z0-9_]+`).FindAllString(exprs.String(), -1) {
		if !registered[m] {
			t.Errorf("dashboard queries %s, which no package of shardproxy registers", m)
		}
	}
}

// registeredMetrics returns the metric names found as string literals in
// the non-test Go sources of the shardproxy binary's packages and of
// package rebalance (whose controller runs inside the proxy on the Raft
// leader), each with the _bucket, _count and _sum series a histogram adds.
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "../cmd/shardproxy", "../rebalance").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	lit := regexp.MustCompile(`"(shardproxy_[a-z0-9_]+)"`)
	names := map[string]bool{}
	for _, dir := range strings.Fields(string(out)) {
		if !strings.HasPrefix(dir, root+string(filepath.Separator)) {
			continue // dependencies outside the module
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range lit.FindAllStringSubmatch(string(src), -1) {
				for _, suffix := range []string{"", "_bucket", "_count", "_sum"} {
					names[m[1]+suffix] = true
				}
			}
		}
	}
	if !names["shardproxy_clients_active"] || !names["shardproxy_raft_term"] {
		t.Fatalf("found no proxy or Raft metrics in the sources (%d names)", len(names))
	}
	return names
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func checkMounted(t *testing.T, c composeFile, svc, source, target string) {
	t.Helper()
	s, ok := c.Services[svc]
	if !ok {
		t.Errorf("no service %s", svc)
		return
	}
	if !slices.ContainsFunc(mounts(t, svc, s), func(m mount) bool { return m.source == source && m.target == target }) {
		t.Errorf("service %s does not mount %s at %s (volumes %v)", svc, source, target, s.Volumes)
	}
}
