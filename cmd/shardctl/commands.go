package main

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shardproxy/shardproxy/proxy/admin"
	"github.com/shardproxy/shardproxy/topology"
)

func (a *app) statusCommand() *cobra.Command {
	var health bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Nodes, leader, shards with their health, topology version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if !health {
				q.Set("health", "0")
			}
			var st admin.Status
			if err := a.get("/v1/status", q, &st); err != nil {
				return err
			}
			if a.g.output == "json" {
				return a.json(st)
			}
			state := "static topology, no Raft"
			if st.Raft != nil {
				state = strings.ToLower(st.Raft.State)
			}
			fmt.Fprintf(a.out, "node:     %s (%s)\n", st.NodeID, state)
			if st.Leader != nil {
				fmt.Fprintf(a.out, "leader:   %s %s\n", st.Leader.ID, orDash(st.Leader.AdminURL))
			} else if st.Mode == "raft" {
				fmt.Fprintf(a.out, "leader:   none (topology is read-only)\n")
			}
			fmt.Fprintf(a.out, "topology: version %d, %d shards, %d tables, %d distributions, default shard %s\n\n",
				st.TopologyVersion, len(st.Shards), st.Tables, st.Distributions, orDash(st.DefaultShard))
			if st.Mode == "raft" {
				a.printNodes(st.Nodes)
				fmt.Fprintln(a.out)
			}
			var rows [][]string
			for _, sh := range st.Shards {
				name := sh.Name
				if sh.Default {
					name += " (default)"
				}
				if len(sh.Health) == 0 {
					rows = append(rows, []string{name, string(sh.State), "primary", sh.Primary, "-", "-", "-"})
					for _, r := range sh.Replicas {
						rows = append(rows, []string{"", "", "replica", r, "-", "-", "-"})
					}
					continue
				}
				for i, h := range sh.Health {
					n, state := "", ""
					if i == 0 {
						n, state = name, string(sh.State)
					}
					up, lat, rec := "DOWN", "-", "-"
					if h.Up {
						up, lat = "up", fmt.Sprintf("%.1fms", h.LatencyMS)
					}
					if h.InRecovery != nil {
						rec = yesNo(*h.InRecovery)
					}
					rows = append(rows, []string{n, state, h.Role, h.Addr, up, lat, rec})
				}
			}
			a.table([]string{"SHARD", "STATE", "ROLE", "ADDRESS", "HEALTH", "LATENCY", "IN RECOVERY"}, rows)
			if len(st.Warnings) > 0 {
				fmt.Fprintln(a.out, "\nwarnings:")
				for _, w := range st.Warnings {
					fmt.Fprintf(a.out, "  - %s\n", w)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&health, "health", true, "probe every primary and replica (TCP + SSLRequest, and pg_is_in_recovery when the proxy can log in)")
	return cmd
}

func (a *app) printNodes(nodes []admin.Node) {
	var rows [][]string
	for _, n := range nodes {
		id := n.ID
		if n.Self {
			id += " *"
		}
		rows = append(rows, []string{id, orDash(n.Suffrage), yesNo(n.Leader), orDash(n.RaftAddr), orDash(n.AdminURL)})
	}
	a.table([]string{"NODE", "SUFFRAGE", "LEADER", "RAFT ADDRESS", "ADMIN URL"}, rows)
}

// ---- shards ----

func (a *app) shardNames() ([]string, error) {
	var out struct{ Shards []topology.Shard }
	if err := a.get("/v1/shards", nil, &out); err != nil {
		return nil, err
	}
	var names []string
	for _, s := range out.Shards {
		names = append(names, s.Name)
	}
	return names, nil
}

func (a *app) shardsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "shards", Short: "List, add and remove shards"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the shards",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Version      uint64           `json:"version"`
				DefaultShard string           `json:"default_shard"`
				Shards       []topology.Shard `json:"shards"`
			}
			if err := a.get("/v1/shards", nil, &out); err != nil {
				return err
			}
			if a.g.output == "json" {
				return a.json(out)
			}
			var rows [][]string
			for _, s := range out.Shards {
				name := s.Name
				if s.Name == out.DefaultShard {
					name += " (default)"
				}
				rows = append(rows, []string{name, string(s.State), s.References.String(), s.Primary, orDash(strings.Join(s.Replicas, ",")), orDash(s.Region)})
			}
			a.table([]string{"SHARD", "STATE", "REFERENCES", "PRIMARY", "REPLICAS", "REGION"}, rows)
			return nil
		},
	}
	var req admin.ShardRequest
	add := &cobra.Command{
		Use:   "add NAME --primary HOST:PORT [--replica HOST:PORT]...",
		Short: "Add a shard (it owns no data until tables are distributed onto it or ranges move to it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			req.ExpectVersion = a.g.ifVersion
			if req.Primary == "" {
				return fmt.Errorf("--primary HOST:PORT is required")
			}
			return a.write(http.MethodPost, "/v1/shards", req)
		},
	}
	add.Flags().StringVar(&req.Primary, "primary", "", "primary's host:port")
	add.Flags().StringSliceVar(&req.Replicas, "replica", nil, "a streaming replica's host:port (repeatable)")
	add.Flags().StringVar(&req.Region, "region", "", "region label")
	remove := &cobra.Command{
		Use:               "remove NAME",
		Short:             "Remove a shard that owns no data (no ranges, list values or directory entries)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeFrom(a.shardNames, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/v1/shards/" + url.PathEscape(args[0])
			if a.g.ifVersion != 0 {
				path += "?expect_version=" + strconv.FormatUint(a.g.ifVersion, 10)
			}
			return a.write(http.MethodDelete, path, nil)
		},
	}
	cmd.AddCommand(list, add, remove)
	return cmd
}

// ---- tables ----

func (a *app) tableNames() ([]string, error) {
	var out admin.Tables
	if err := a.get("/v1/tables", nil, &out); err != nil {
		return nil, err
	}
	var names []string
	for _, t := range out.Tables {
		names = append(names, strings.TrimPrefix(t.Name, "public."))
	}
	return names, nil
}

func (a *app) tablesCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "tables", Short: "List tables; make a table distributed or a reference table"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List distributed and reference tables and their distributions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out admin.Tables
			if err := a.get("/v1/tables", nil, &out); err != nil {
				return err
			}
			if a.g.output == "json" {
				return a.json(out)
			}
			var rows [][]string
			for _, t := range out.Tables {
				rows = append(rows, []string{t.Name, string(t.Kind), orDash(t.KeyColumn), orDash(t.Distribution)})
			}
			a.table([]string{"TABLE", "KIND", "KEY", "DISTRIBUTION"}, rows)
			fmt.Fprintf(a.out, "\nother tables live on the default shard %s\n\n", orDash(out.DefaultShard))
			rows = nil
			for _, d := range out.Distributions {
				rows = append(rows, []string{d.Name, string(d.Scheme), string(d.KeyType), strconv.Itoa(d.Ranges), strconv.Itoa(d.Overrides), strings.Join(d.Shards, ",")})
			}
			a.table([]string{"DISTRIBUTION", "SCHEME", "KEY TYPE", "RANGES", "DIRECTORY", "SHARDS"}, rows)
			return nil
		},
	}
	var dreq admin.DistributeRequest
	var keyType string
	distribute := &cobra.Command{
		Use:   "distribute TABLE --key COLUMN [--distribution NAME]",
		Short: "Distribute a table by a key column (tables in one distribution are colocated)",
		Long: `distribute makes TABLE a distributed table keyed by COLUMN. Tables in the same
distribution put equal keys on the same shard (e.g. users by id and posts by
author_id in distribution "users"). A new distribution is laid out over the
shards with the hash scheme. Rows already on the shards are not moved.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dreq.Table = args[0]
			dreq.KeyType = topology.KeyType(keyType)
			dreq.ExpectVersion = a.g.ifVersion
			if dreq.KeyColumn == "" {
				return fmt.Errorf("--key COLUMN is required")
			}
			return a.write(http.MethodPost, "/v1/tables/distribute", dreq)
		},
	}
	df := distribute.Flags()
	df.StringVar(&dreq.KeyColumn, "key", "", "key column")
	df.StringVar(&dreq.Distribution, "distribution", "", "distribution (colocation group); default: the table's name")
	df.StringVar(&keyType, "key-type", "", "int, text or uuid (new distributions; default int)")
	df.StringSliceVar(&dreq.Shards, "shards", nil, "shards of a new distribution's layout (default: all active)")
	df.IntVar(&dreq.VNodes, "vnodes", 0, "virtual nodes per shard for a new distribution (default 64)")
	_ = distribute.RegisterFlagCompletionFunc("key-type", cobra.FixedCompletions([]string{"int", "text", "uuid"}, cobra.ShellCompDirectiveNoFileComp))
	reference := &cobra.Command{
		Use:   "reference TABLE",
		Short: "Make a table a reference table (a full copy on every shard)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.write(http.MethodPost, "/v1/tables/reference", admin.ReferenceRequest{Table: args[0], ExpectVersion: a.g.ifVersion})
		},
	}
	cmd.AddCommand(list, distribute, reference)
	return cmd
}

// ---- ranges ----

func (a *app) rangesCommand() *cobra.Command {
	var table, database string
	var stats bool
	cmd := &cobra.Command{
		Use:   "ranges [DISTRIBUTION]",
		Short: "Range tables: owner, share of the hash space, rows and size per range",
		Long: `ranges shows each distribution's range table. With --stats (the default) every
shard is asked how many rows of each table of the distribution fall in each
range (one scan per table and shard, using PostgreSQL's own hash functions);
rows found on a shard that does not own their range are listed as stray.`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: a.completeFrom(a.distributionNames, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if len(args) == 1 {
				q.Set("distribution", args[0])
			}
			if table != "" {
				q.Set("table", table)
			}
			if stats {
				q.Set("stats", "1")
				q.Set("database", database)
			}
			var out admin.Ranges
			if err := a.get("/v1/ranges", q, &out); err != nil {
				return err
			}
			if a.g.output == "json" {
				return a.json(out)
			}
			for i, d := range out.Distributions {
				if i > 0 {
					fmt.Fprintln(a.out)
				}
				fmt.Fprintf(a.out, "distribution %s (%s, %s keys), tables: %s\n", d.Name, d.Scheme, d.KeyType, orDash(strings.Join(d.Tables, ", ")))
				var rows [][]string
				for _, r := range d.Ranges {
					row := []string{strconv.FormatInt(r.Lo, 10), strconv.FormatInt(r.Hi, 10), r.Shard}
					if d.Scheme == topology.Hash {
						row = append(row, fmt.Sprintf("%.2f%%", 100*r.Fraction))
					} else {
						row = append(row, "-")
					}
					if r.Rows != nil {
						row = append(row, strconv.FormatInt(*r.Rows, 10), humanBytes(*r.Bytes))
					} else {
						row = append(row, "-", "-")
					}
					rows = append(rows, row)
				}
				for _, r := range d.TextRanges {
					rows = append(rows, []string{strconv.Quote(r.From), orDash(strconv.Quote(r.To)), r.Shard, "-", "-", "-"})
				}
				if len(rows) > 0 {
					a.table([]string{"LO", "HI", "SHARD", "SHARE", "ROWS", "SIZE"}, rows)
				}
				if len(d.ListValues) > 0 {
					rows = nil
					for _, k := range sortedKeys(d.ListValues) {
						rows = append(rows, []string{k, d.ListValues[k]})
					}
					a.table([]string{"VALUE", "SHARD"}, rows)
				}
				if len(d.Overrides) > 0 {
					fmt.Fprintf(a.out, "directory entries (override the ranges, not counted above): %d (shardctl directory list)\n", len(d.Overrides))
				}
				for _, s := range d.Stray {
					fmt.Fprintf(a.out, "stray: %d rows of %s in [%d, %d] on %s, which belongs to %s\n", s.Rows, s.Table, s.Lo, s.Hi, s.Shard, s.Owner)
				}
				for _, e := range d.StatsError {
					fmt.Fprintf(a.out, "stats: %s\n", e)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&table, "table", "", "show the distribution of this table")
	cmd.Flags().BoolVar(&stats, "stats", true, "count rows per range on the shards")
	cmd.Flags().StringVar(&database, "database", "postgres", "database the tables live in (for --stats)")
	return cmd
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (a *app) distributionNames() ([]string, error) {
	var out admin.Tables
	if err := a.get("/v1/tables", nil, &out); err != nil {
		return nil, err
	}
	var names []string
	for _, d := range out.Distributions {
		names = append(names, d.Name)
	}
	return names, nil
}

// ---- key ----

func (a *app) keyCommand() *cobra.Command {
	var byDist bool
	cmd := &cobra.Command{
		Use:               "key TABLE VALUE",
		Short:             "Which shard owns a key, and why (directory entry, range or list)",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeFrom(a.tableNames, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{"value": {args[1]}}
			if byDist {
				q.Set("distribution", args[0])
			} else {
				q.Set("table", args[0])
			}
			var ans admin.KeyAnswer
			if err := a.get("/v1/key", q, &ans); err != nil {
				return err
			}
			if a.g.output == "json" {
				return a.json(ans)
			}
			shard := ans.Shard
			if len(ans.Shards) > 0 {
				shard = "every shard (" + strings.Join(ans.Shards, ", ") + ")"
			}
			fmt.Fprintf(a.out, "shard:    %s\nwhy:      %s\n", shard, ans.Explanation)
			if ans.Distribution != "" {
				fmt.Fprintf(a.out, "key:      %s (%s) in distribution %s\n", ans.Key, ans.KeyType, ans.Distribution)
			}
			fmt.Fprintf(a.out, "topology: version %d\n", ans.Version)
			return nil
		},
	}
	cmd.Flags().BoolVar(&byDist, "distribution", false, "the first argument names a distribution instead of a table")
	return cmd
}

// ---- directory ----

func (a *app) directoryCommand() *cobra.Command {
	var byDist bool
	cmd := &cobra.Command{
		Use:   "directory",
		Short: "Pin single keys to shards (directory entries override the ranges)",
	}
	target := func(name string) (table, dist string) {
		if byDist {
			return "", name
		}
		return name, ""
	}
	list := &cobra.Command{
		Use:   "list [TABLE]",
		Short: "List directory entries",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if len(args) == 1 {
				t, d := target(args[0])
				if t != "" {
					q.Set("table", t)
				} else {
					q.Set("distribution", d)
				}
			}
			var out struct {
				Version uint64                 `json:"version"`
				Entries []admin.DirectoryEntry `json:"entries"`
			}
			if err := a.get("/v1/directory", q, &out); err != nil {
				return err
			}
			if a.g.output == "json" {
				return a.json(out)
			}
			var rows [][]string
			for _, e := range out.Entries {
				rows = append(rows, []string{e.Distribution, e.Key, e.Shard})
			}
			a.table([]string{"DISTRIBUTION", "KEY", "SHARD"}, rows)
			return nil
		},
	}
	set := &cobra.Command{
		Use:               "set TABLE KEY SHARD",
		Short:             "Route KEY of TABLE's distribution to SHARD (existing rows are not moved)",
		Args:              cobra.ExactArgs(3),
		ValidArgsFunction: a.completeFrom(a.tableNames, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, d := target(args[0])
			return a.write(http.MethodPut, "/v1/directory", admin.DirectoryRequest{Table: t, Distribution: d, Key: args[1], Shard: args[2], ExpectVersion: a.g.ifVersion})
		},
	}
	unset := &cobra.Command{
		Use:               "unset TABLE KEY",
		Short:             "Remove a directory entry; the key routes by its range again",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeFrom(a.tableNames, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, d := target(args[0])
			return a.write(http.MethodDelete, "/v1/directory", admin.DirectoryRequest{Table: t, Distribution: d, Key: args[1], ExpectVersion: a.g.ifVersion})
		},
	}
	cmd.PersistentFlags().BoolVar(&byDist, "distribution", false, "the TABLE argument names a distribution instead")
	cmd.AddCommand(list, set, unset)
	return cmd
}

// ---- nodes ----

func (a *app) nodeIDs() ([]string, error) {
	var out admin.Nodes
	if err := a.get("/v1/nodes", nil, &out); err != nil {
		return nil, err
	}
	var ids []string
	for _, n := range out.Nodes {
		ids = append(ids, n.ID)
	}
	return ids, nil
}

func (a *app) nodesCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "nodes", Short: "Raft members: list, remove"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the proxies of the Raft cluster (* = the one answering)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out admin.Nodes
			if err := a.get("/v1/nodes", nil, &out); err != nil {
				return err
			}
			if a.g.output == "json" {
				return a.json(out)
			}
			if out.Mode != "raft" {
				fmt.Fprintln(a.out, "this proxy runs without Raft (no raft.dir): its topology comes from its config file")
				return nil
			}
			a.printNodes(out.Nodes)
			return nil
		},
	}
	remove := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a proxy from the Raft cluster (e.g. one that is gone for good)",
		Long: `remove takes a node out of the Raft configuration, so the remaining voters
form the majority. Stop the removed proxy; to bring it back, wipe its raft.dir
and start it with --join.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeFrom(a.nodeIDs, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.write(http.MethodDelete, "/v1/nodes/"+url.PathEscape(args[0]), nil)
		},
	}
	cmd.AddCommand(list, remove)
	return cmd
}
