package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/shardproxy/shardproxy/proxy/admin"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/rebalance"
	"github.com/shardproxy/shardproxy/topology/raftstore"
)

// clusterFlags are the Raft and admin flags shared by the root command and
// "dev". Set flags override the config file.
type clusterFlags struct {
	raftDir, raftBind, raftAdvertise, raftNodeID string
	join                                         []string
	adminToken                                   string
}

// envAdminToken overrides admin_token, so the token need not be written in
// the config file or on the command line.
const envAdminToken = "SHARDPROXY_ADMIN_TOKEN"

func addClusterFlags(f *pflag.FlagSet, o *clusterFlags) {
	f.StringVar(&o.raftDir, "raft-dir", "", "enable Raft: keep the replicated topology in DIR (a new DIR bootstraps a one-node cluster unless --join is given)")
	f.StringVar(&o.raftBind, "raft-bind", "", "host:port of the Raft transport (default raft.bind, 127.0.0.1:9931)")
	f.StringVar(&o.raftAdvertise, "raft-advertise", "", "host:port other nodes use to reach this node's Raft transport (default: --raft-bind)")
	f.StringVar(&o.raftNodeID, "raft-node-id", "", "this node's Raft ID (default: generated once and kept in DIR/node-id)")
	f.StringSliceVar(&o.join, "join", nil, "admin address (host:port or URL) of a running node to join; repeat or comma-separate for several")
}

// apply copies the flags that were set into cfg.
func (o *clusterFlags) apply(cmd *cobra.Command, cfg *config.Config) {
	f := cmd.Flags()
	if f.Changed("raft-dir") {
		cfg.Raft.Dir = o.raftDir
	}
	if f.Changed("raft-bind") {
		cfg.Raft.Bind = o.raftBind
	}
	if f.Changed("raft-advertise") {
		cfg.Raft.Advertise = o.raftAdvertise
	}
	if f.Changed("raft-node-id") {
		cfg.Raft.NodeID = o.raftNodeID
	}
	if f.Changed("join") {
		cfg.Raft.Join = o.join
	}
	if t, ok := os.LookupEnv(envAdminToken); ok {
		cfg.AdminToken = t
	}
}

const nodeIDFile = "node-id"

// raftNodeID returns the Raft ID for dir: raft.node_id, else the one
// stored in dir/node-id, else a new one (host name + random suffix) that is
// stored there. A configured ID must match a stored one: Raft membership
// is keyed by it.
func raftNodeID(cfg config.Config) (string, error) {
	path := filepath.Join(cfg.Raft.Dir, nodeIDFile)
	stored := ""
	if b, err := os.ReadFile(path); err == nil {
		stored = strings.TrimSpace(string(b))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("raft: %w", err)
	}
	id := cfg.Raft.NodeID
	switch {
	case id != "" && stored != "" && id != stored:
		return "", fmt.Errorf("raft.node_id %q differs from %q, the ID %s was created with; use that ID or a new raft.dir", id, stored, cfg.Raft.Dir)
	case id == "" && stored != "":
		return stored, nil
	case id == "":
		host, _ := os.Hostname()
		host, _, _ = strings.Cut(host, ".")
		if host == "" {
			host = "node"
		}
		var b [3]byte
		_, _ = rand.Read(b[:])
		id = host + "-" + hex.EncodeToString(b[:])
	}
	if stored == "" {
		if err := os.MkdirAll(cfg.Raft.Dir, 0o700); err != nil {
			return "", fmt.Errorf("raft.dir: %w", err)
		}
		if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("raft: %w", err)
		}
	}
	return id, nil
}

// openRaft opens the Raft store of cfg. A node without --join bootstraps
// itself when its directory is new; the initial topology is the one the
// config describes.
func openRaft(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (*raftstore.Store, error) {
	id, err := raftNodeID(cfg)
	if err != nil {
		return nil, err
	}
	initial, err := cfg.Topology()
	if err != nil {
		return nil, err
	}
	rc := raftstore.Default()
	rc.NodeID = id
	rc.DataDir = cfg.Raft.Dir
	rc.BindAddr = cfg.Raft.Bind
	rc.AdvertiseAddr = cfg.Raft.Advertise
	rc.Bootstrap = len(cfg.Raft.Join) == 0
	rc.Initial = initial
	rc.MaxVoters = cfg.Raft.MaxVoters
	rc.Logger = log
	rc.Registerer = reg
	st, err := raftstore.Open(rc)
	if err != nil {
		return nil, fmt.Errorf("raft: %w", err)
	}
	log.Info("raft started", "node", id, "addr", st.Addr(), "dir", cfg.Raft.Dir, "bootstrap", rc.Bootstrap, "join", cfg.Raft.Join)
	return st, nil
}

// joinTargets turns raft.join into admin base URLs (validated already).
func joinTargets(cfg config.Config) []string {
	var out []string
	for _, j := range cfg.Raft.Join {
		if u, err := config.AdminURL(j); err == nil {
			out = append(out, u)
		}
	}
	return out
}

// shardConn returns how the admin API logs in to shards (shardLogin).
func shardConn(cfg config.Config) admin.ShardConnFunc {
	user, password := shardLogin(cfg)
	timeout := cfg.Pool.ConnectTimeout.D()
	return func(ctx context.Context, addr, database string) (*pgx.Conn, error) {
		pc, err := pgx.ParseConfig(rebalance.Conninfo(addr, database, user, password) + " sslmode=prefer application_name=shardproxy-admin")
		if err != nil {
			return nil, err
		}
		pc.ConnectTimeout = timeout
		return pgx.ConnectConfig(ctx, pc)
	}
}

// shardLogin is how the admin API and the rebalance controller log in to
// shards: as server.user (else the first configured user, else postgres)
// with server.password (else that user's plain password).
func shardLogin(cfg config.Config) (user, password string) {
	user, password = cfg.Server.User, cfg.Server.Password
	if user == "" && len(cfg.Users) > 0 {
		user = cfg.Users[0].Name
	}
	if user == "" {
		user = "postgres"
	}
	if password == "" {
		if u, ok := cfg.LookupUser(user); ok && !strings.HasPrefix(u.Password, "SCRAM-SHA-256$") && !(len(u.Password) == 35 && strings.HasPrefix(u.Password, "md5")) {
			password = u.Password
		}
	}
	return user, password
}
