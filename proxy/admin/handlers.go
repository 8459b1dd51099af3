package admin

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/shardproxy/shardproxy/topology"
)

// healthz: the process is up and its HTTP server answers.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Readiness{Ready: true, Version: s.store.Current().Version(), Time: nowString()})
}

// readyz: the proxy accepts clients and has a topology with shards.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	rd := s.readiness()
	code := http.StatusOK
	if !rd.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, rd)
}

func (s *Server) readiness() Readiness {
	snap := s.store.Current()
	rd := Readiness{Version: snap.Version(), Time: nowString()}
	if s.opts.Ready != nil {
		if err := s.opts.Ready(); err != nil {
			rd.Reasons = append(rd.Reasons, err.Error())
		}
	}
	switch {
	case snap.Version() == 0:
		rd.Reasons = append(rd.Reasons, "no topology yet (a joining node receives it from the Raft leader)")
	case len(snap.ShardNames()) == 0:
		rd.Reasons = append(rd.Reasons, "the topology has no shards")
	}
	rd.Ready = len(rd.Reasons) == 0
	return rd
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) error {
	snap := s.store.Current()
	st := Status{
		Mode:            s.mode(),
		TopologyVersion: snap.Version(),
		DefaultShard:    snap.DefaultShard(),
		Tables:          len(snap.Tables()),
		Distributions:   len(snap.DistributionNames()),
	}
	st.Nodes = s.nodes()
	for i := range st.Nodes {
		if st.Nodes[i].Self {
			st.NodeID = st.Nodes[i].ID
		}
		if st.Nodes[i].Leader {
			n := st.Nodes[i]
			st.Leader = &n
		}
		if s.cluster != nil && st.Nodes[i].AdminURL == "" {
			st.Warnings = append(st.Warnings, fmt.Sprintf("admin address of node %s not known yet; writes sent here cannot be forwarded to it while it leads", st.Nodes[i].ID))
		}
	}
	if s.cluster != nil {
		rs := s.cluster.Status()
		st.Raft = &rs
		st.NodeID = rs.NodeID
		if st.Leader == nil {
			st.Warnings = append(st.Warnings, "no Raft leader: topology is read-only (routing continues with version "+fmt.Sprint(snap.Version())+")")
		}
	}
	health := r.URL.Query().Get("health") != "0"
	shards := snap.Shards()
	st.Shards = make([]ShardStatus, len(shards))
	var wg sync.WaitGroup
	for i, sh := range shards {
		st.Shards[i] = ShardStatus{Shard: sh, Default: sh.Name == snap.DefaultShard()}
		if !health {
			continue
		}
		st.Shards[i].Health = make([]Health, 1+len(sh.Replicas))
		addrs := append([]string{sh.Primary}, sh.Replicas...)
		for j, a := range addrs {
			role := "replica"
			if j == 0 {
				role = "primary"
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				st.Shards[i].Health[j] = s.probe(r.Context(), a, role)
			}()
		}
	}
	wg.Wait()
	for _, sh := range st.Shards {
		for _, h := range sh.Health {
			switch {
			case !h.Up:
				st.Warnings = append(st.Warnings, fmt.Sprintf("shard %s: %s %s is down: %s", sh.Name, h.Role, h.Addr, h.Error))
			case h.InRecovery != nil && *h.InRecovery && h.Role == "primary":
				st.Warnings = append(st.Warnings, fmt.Sprintf("shard %s: primary %s is in recovery (a replica?); if a failover happened, promote the new primary in the topology", sh.Name, h.Addr))
			case h.InRecovery != nil && !*h.InRecovery && h.Role == "replica":
				st.Warnings = append(st.Warnings, fmt.Sprintf("shard %s: replica %s is not in recovery (promoted?); reads sent there may see a diverged copy", sh.Name, h.Addr))
			case h.MaxPreparedTransactions != nil && *h.MaxPreparedTransactions == 0 && h.Role == "primary":
				st.Warnings = append(st.Warnings, fmt.Sprintf("shard %s: primary %s has max_prepared_transactions = 0, so transactions writing on several shards cannot commit; set it (e.g. 100) in postgresql.conf and restart the server", sh.Name, h.Addr))
			}
		}
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// nodes lists the Raft members with their admin URLs (or this node alone
// in static mode).
func (s *Server) nodes() []Node {
	if s.cluster == nil {
		return []Node{{ID: "local", AdminURL: s.peers.selfURL, Leader: true, Self: true}}
	}
	self := s.cluster.NodeID()
	peers := s.peers.all()
	servers, err := s.cluster.Servers()
	if err != nil || len(servers) == 0 {
		// Not a member of any configuration yet (waiting to join).
		return []Node{{ID: self, RaftAddr: s.cluster.Addr(), AdminURL: peers[self], Self: true}}
	}
	leaderID, _ := s.cluster.Leader()
	out := make([]Node, 0, len(servers))
	for _, sv := range servers {
		out = append(out, Node{ID: sv.ID, RaftAddr: sv.Address, AdminURL: peers[sv.ID], Suffrage: sv.Suffrage,
			Leader: sv.ID == leaderID, Self: sv.ID == self})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (s *Server) getTopology(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, s.store.Current())
	return nil
}

func (s *Server) getShards(w http.ResponseWriter, r *http.Request) error {
	snap := s.store.Current()
	out := struct {
		Version      uint64           `json:"version"`
		DefaultShard string           `json:"default_shard"`
		Shards       []topology.Shard `json:"shards"`
	}{snap.Version(), snap.DefaultShard(), snap.Shards()}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) postShard(w http.ResponseWriter, r *http.Request) error {
	var req ShardRequest
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if err := decode(body, &req); err != nil {
		return err
	}
	if req.Name == "" || req.Primary == "" {
		return badRequest("a shard needs a name and a primary (host:port)")
	}
	// A shard added after reference tables exist is given them by the
	// rebalance controller before the proxies use it (topology.ReferencesSyncing).
	cmd := topology.AddShard{Shard: topology.Shard{Name: req.Name, Primary: req.Primary, Replicas: req.Replicas,
		Region: req.Region, References: topology.ReferencesSyncing}, ExpectVersion: req.ExpectVersion}
	return s.apply(w, r, cmd, fmt.Sprintf("shard %s added with primary %s; it owns no data yet (distribute tables onto it or move ranges to it; reference tables are copied to it first, see shardctl rebalance status)", req.Name, req.Primary))
}

func (s *Server) deleteShard(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	cmd := topology.RemoveShard{Name: name, ExpectVersion: expectVersion(r)}
	return s.apply(w, r, cmd, fmt.Sprintf("shard %s removed", name))
}

// deleteReplica takes a replica (host:port) out of a shard: every proxy
// stops sending it reads. The server itself is left alone.
func (s *Server) deleteReplica(w http.ResponseWriter, r *http.Request) error {
	name, addr := r.PathValue("name"), r.PathValue("addr")
	cmd := topology.RemoveReplica{Shard: name, Endpoint: addr, ExpectVersion: expectVersion(r)}
	return s.apply(w, r, cmd, fmt.Sprintf("replica %s removed from shard %s", addr, name))
}

// expectVersion reads ?expect_version=N (0 = none).
func expectVersion(r *http.Request) uint64 {
	var v uint64
	fmt.Sscan(r.URL.Query().Get("expect_version"), &v)
	return v
}

func (s *Server) getTables(w http.ResponseWriter, r *http.Request) error {
	snap := s.store.Current()
	out := Tables{Version: snap.Version(), DefaultShard: snap.DefaultShard(), Tables: snap.Tables()}
	for _, d := range snap.Distributions() {
		set := map[string]bool{}
		for _, rg := range d.Ranges {
			set[rg.Shard] = true
		}
		for _, rg := range d.TextRanges {
			set[rg.Shard] = true
		}
		for _, sh := range d.ListValues {
			set[sh] = true
		}
		for _, sh := range d.Overrides {
			set[sh] = true
		}
		info := DistributionInfo{Name: d.Name, Scheme: d.Scheme, KeyType: d.KeyType,
			Ranges: len(d.Ranges) + len(d.TextRanges) + len(d.ListValues), Overrides: len(d.Overrides)}
		for sh := range set {
			info.Shards = append(info.Shards, sh)
		}
		sort.Strings(info.Shards)
		out.Distributions = append(out.Distributions, info)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) postDistribute(w http.ResponseWriter, r *http.Request) error {
	var req DistributeRequest
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if err := decode(body, &req); err != nil {
		return err
	}
	if req.Table == "" || req.KeyColumn == "" {
		return badRequest("distribute needs a table and its key column")
	}
	if req.Distribution == "" {
		// Default colocation group: the table's own name.
		name := topology.QualifyName(req.Table)
		req.Distribution = name[strings.LastIndexByte(name, '.')+1:]
	}
	cmd := topology.DistributeTable{Table: req.Table, KeyColumn: req.KeyColumn, Distribution: req.Distribution,
		KeyType: req.KeyType, Shards: req.Shards, VNodes: req.VNodes, ExpectVersion: req.ExpectVersion}
	return s.apply(w, r, cmd, fmt.Sprintf("table %s is distributed by %s in distribution %s; rows already on the shards are not moved",
		topology.QualifyName(req.Table), req.KeyColumn, req.Distribution))
}

func (s *Server) postReference(w http.ResponseWriter, r *http.Request) error {
	var req ReferenceRequest
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if err := decode(body, &req); err != nil {
		return err
	}
	if req.Table == "" {
		return badRequest("reference needs a table")
	}
	cmd := topology.ReferenceTable{Table: req.Table, ExpectVersion: req.ExpectVersion}
	return s.apply(w, r, cmd, fmt.Sprintf("table %s is a reference table (a copy on every shard); copy existing rows to every shard yourself", topology.QualifyName(req.Table)))
}

// resolveDistribution names the distribution of a request that gives a
// distribution or a table.
func resolveDistribution(snap *topology.Snapshot, table, dist string) (string, error) {
	if dist != "" {
		if _, ok := snap.Distribution(dist); !ok {
			return "", &APIError{Status: http.StatusNotFound, Code: CodeNotFound,
				Msg: fmt.Sprintf("distribution %q does not exist", dist), Hint: "list them with shardctl tables list"}
		}
		return dist, nil
	}
	if table == "" {
		return "", badRequest("name a table or a distribution")
	}
	t, ok := snap.Table(topology.QualifyName(table))
	if !ok || t.Kind != topology.Distributed {
		return "", &APIError{Status: http.StatusNotFound, Code: CodeNotFound,
			Msg:  fmt.Sprintf("table %s is not a distributed table", topology.QualifyName(table)),
			Hint: "only distributed tables have keys; list them with shardctl tables list"}
	}
	return t.Distribution, nil
}

func (s *Server) getDirectory(w http.ResponseWriter, r *http.Request) error {
	snap := s.store.Current()
	filter := r.URL.Query().Get("distribution")
	if t := r.URL.Query().Get("table"); t != "" || filter != "" {
		d, err := resolveDistribution(snap, t, filter)
		if err != nil {
			return err
		}
		filter = d
	}
	out := struct {
		Version uint64           `json:"version"`
		Entries []DirectoryEntry `json:"entries"`
	}{Version: snap.Version(), Entries: []DirectoryEntry{}}
	for _, d := range snap.Distributions() {
		if filter != "" && d.Name != filter {
			continue
		}
		for k, sh := range d.Overrides {
			out.Entries = append(out.Entries, DirectoryEntry{Distribution: d.Name, Key: k, Shard: sh})
		}
	}
	sort.Slice(out.Entries, func(i, j int) bool {
		a, b := out.Entries[i], out.Entries[j]
		if a.Distribution != b.Distribution {
			return a.Distribution < b.Distribution
		}
		return a.Key < b.Key
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) directoryRequest(r *http.Request) (DirectoryRequest, string, error) {
	var req DirectoryRequest
	body, err := readBody(r)
	if err != nil {
		return req, "", err
	}
	if err := decode(body, &req); err != nil {
		return req, "", err
	}
	dist, err := resolveDistribution(s.store.Current(), req.Table, req.Distribution)
	return req, dist, err
}

func (s *Server) putDirectory(w http.ResponseWriter, r *http.Request) error {
	req, dist, err := s.directoryRequest(r)
	if err != nil {
		return err
	}
	if req.Shard == "" {
		return badRequest("directory set needs a shard")
	}
	if !s.store.Current().HasShard(req.Shard) {
		return &APIError{Status: http.StatusNotFound, Code: CodeNotFound, Msg: fmt.Sprintf("shard %q does not exist", req.Shard),
			Hint: "list the shards with shardctl shards list"}
	}
	cmd := topology.SetOverride{Distribution: dist, Key: req.Key, Shard: req.Shard, ExpectVersion: req.ExpectVersion}
	return s.apply(w, r, cmd, fmt.Sprintf("key %q of distribution %s now routes to shard %s (existing rows are not moved)", req.Key, dist, req.Shard))
}

func (s *Server) deleteDirectory(w http.ResponseWriter, r *http.Request) error {
	req, dist, err := s.directoryRequest(r)
	if err != nil {
		return err
	}
	cmd := topology.ClearOverride{Distribution: dist, Key: req.Key, ExpectVersion: req.ExpectVersion}
	return s.apply(w, r, cmd, fmt.Sprintf("key %q of distribution %s routes by its %s again", req.Key, dist, "scheme"))
}

func (s *Server) getNodes(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, Nodes{Version: s.store.Current().Version(), Mode: s.mode(), Nodes: s.nodes()})
	return nil
}

func (s *Server) deleteNode(w http.ResponseWriter, r *http.Request) error {
	if s.cluster == nil {
		return badRequest("this proxy runs without Raft (no raft.dir): there are no nodes to remove")
	}
	id := r.PathValue("id")
	servers, err := s.cluster.Servers()
	if err != nil {
		return err
	}
	found, voters := false, 0
	for _, sv := range servers {
		if sv.Suffrage == "voter" {
			voters++
		}
		if sv.ID == id {
			found = true
		}
	}
	if !found {
		return &APIError{Status: http.StatusNotFound, Code: CodeNotFound, Msg: fmt.Sprintf("node %q is not a member of the cluster", id),
			Hint: "list the members with shardctl nodes list"}
	}
	if voters == 1 && len(servers) > 0 {
		for _, sv := range servers {
			if sv.ID == id && sv.Suffrage == "voter" {
				return &APIError{Status: http.StatusUnprocessableEntity, Code: CodeInvalid,
					Msg:  fmt.Sprintf("node %s is the only voter; removing it would leave the cluster unable to change topology", id),
					Hint: "start another proxy with --join first"}
			}
		}
	}
	if err := s.cluster.RemoveServer(r.Context(), id); err != nil {
		return err
	}
	s.peers.remove(id)
	msg := fmt.Sprintf("node %s removed from the Raft cluster; stop its process (it no longer receives topology changes)", id)
	if id == s.cluster.NodeID() {
		msg = fmt.Sprintf("node %s (the leader, which answered this request) removed itself; the others elect a new leader", id)
	}
	writeJSON(w, http.StatusOK, WriteResult{Version: s.store.Current().Version(), Message: msg})
	return nil
}

func (s *Server) postJoin(w http.ResponseWriter, r *http.Request) error {
	if s.cluster == nil {
		return badRequest("this proxy runs without Raft (no raft.dir): start it with --raft-dir to let others join")
	}
	var req JoinRequest
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if err := decode(body, &req); err != nil {
		return err
	}
	if req.ID == "" || req.RaftAddr == "" {
		return badRequest("join needs the node's id and raft_addr")
	}
	if req.AdminURL != "" {
		s.peers.set(req.ID, strings.TrimRight(req.AdminURL, "/"))
	}
	suffrage, err := s.cluster.Join(r.Context(), req.ID, req.RaftAddr)
	if err != nil {
		return err
	}
	leader, _ := s.cluster.Leader()
	writeJSON(w, http.StatusOK, JoinResult{Suffrage: suffrage, LeaderID: leader, Peers: s.peers.all()})
	return nil
}

func (s *Server) getPeers(w http.ResponseWriter, r *http.Request) error {
	from := ""
	if s.cluster != nil {
		from = s.cluster.NodeID()
	}
	writeJSON(w, http.StatusOK, Peers{From: from, Peers: s.peers.all()})
	return nil
}
