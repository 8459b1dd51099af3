package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/shardproxy/shardproxy/proxy/admin"
)

func (a *app) failoverCommand() *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "failover SHARD",
		Short: "Promote a replica of SHARD to primary, fence the old primary, repoint the other replicas",
		Long: `failover promotes one of SHARD's streaming replicas (by default the one that
has received the most WAL, or --to REPLICA) with pg_promote, after fencing the old
primary if it still answers (read-only, client backends terminated). It records the
new primary in the topology, so every proxy switches and closes its connections to
the old one, and points the shard's other replicas at the new primary (or reports
that they need re-cloning).

With asynchronous replication, transactions the old primary acknowledged after the
new primary's last received WAL are lost; the output shows both positions.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeFrom(a.shardNames, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if f := cmd.Flag("timeout"); f != nil && !f.Changed {
				// A failover may take up to 2 minutes (pg_promote waits up
				// to 60 s); it runs to its end on the leader either way.
				a.g.timeout = failoverWait
			}
			ctx, cancel := a.ctx()
			defer cancel()
			req := admin.FailoverRequest{To: to, ExpectVersion: a.g.ifVersion}
			var res admin.FailoverResult
			if err := a.explain(c.Do(ctx, "POST", "/v1/shards/"+url.PathEscape(args[0])+"/failover", req, &res)); err != nil {
				return err
			}
			if a.g.output == "json" {
				return a.json(res)
			}
			a.printFailover(res)
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the replica to promote (host:port); default: the one that has received the most WAL")
	return cmd
}

func (a *app) printFailover(res admin.FailoverResult) {
	fmt.Fprintf(a.out, "%s (took %s)\n\n", res.Message, res.Duration)
	oldState := "fenced (read-only, client backends terminated)"
	if res.Fence != "fenced" {
		oldState = res.Fence + ": " + res.FenceDetail
	}
	rows := [][]string{{"old primary", res.OldPrimary, orDash(res.OldPrimaryLSN), oldState}}
	for _, c := range res.Candidates {
		if !c.Chosen {
			continue
		}
		rows = append(rows, []string{"new primary", c.Addr, orDash(res.PromotedAtLSN), "promoted"})
	}
	for _, r := range res.Replicas {
		lsn := "-"
		for _, c := range res.Candidates {
			if c.Addr == r.Addr {
				lsn = orDash(c.ReceiveLSN)
			}
		}
		rows = append(rows, []string{"replica", r.Addr, lsn, r.State + ": " + r.Detail})
	}
	a.table([]string{"ROLE", "ADDRESS", "WAL", "OUTCOME"}, rows)
	if len(res.Warnings) > 0 {
		fmt.Fprintln(a.out, "\nwarnings:")
		for _, w := range res.Warnings {
			fmt.Fprintf(a.out, "  - %s\n", w)
		}
	}
}

// failoverWait is shardctl failover's default --timeout.
const failoverWait = 2*time.Minute + 15*time.Second

// withReplicaCommands adds the replica subcommands to shards.
func (a *app) withReplicaCommands(shards *cobra.Command) *cobra.Command {
	shards.AddCommand(a.addReplicaCommand(), a.removeReplicaCommand())
	return shards
}

func (a *app) removeReplicaCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "remove-replica SHARD HOST:PORT",
		Short: "Take a replica out of SHARD's read rotation (the server itself is left running)",
		Long: `remove-replica records that HOST:PORT is no longer a replica of SHARD: every
proxy stops sending it reads (reads in flight finish). Nothing is done to the
server; stop or re-purpose it yourself. To put it back: shardctl shards add-replica.`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeFrom(a.shardNames, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/v1/shards/" + url.PathEscape(args[0]) + "/replicas/" + url.PathEscape(args[1])
			if a.g.ifVersion != 0 {
				path += "?expect_version=" + strconv.FormatUint(a.g.ifVersion, 10)
			}
			return a.write(http.MethodDelete, path, nil)
		},
	}
}

func (a *app) addReplicaCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:     "add-replica SHARD HOST:PORT [--data-dir DIR]",
		Aliases: []string{"rejoin"},
		Short:   "Put a standby that streams from SHARD's primary into the shard's read rotation (e.g. the old primary after a failover, once rewound)",
		Long: `add-replica checks, over SQL, that HOST:PORT is a standby of SHARD's primary
(same system identifier, in recovery, its WAL receiver streaming from the
primary on the primary's timeline), removes a failover's fence left in its
postgresql.auto.conf, and records it as a replica of SHARD: every proxy then
sends it reads once its health checks pass.

The proxies never touch a server's data directory. To bring back an old
primary after a failover, on its host: stop it, rewind it from the new primary,
start it, then run this command:

  pg_ctl stop -D $PGDATA
  pg_rewind --target-pgdata=$PGDATA --source-server='host=NEW port=PORT user=postgres dbname=postgres' --write-recovery-conf
  pg_ctl start -D $PGDATA
  shardctl shards add-replica SHARD OLD_HOST:OLD_PORT

pg_rewind needs wal_log_hints = on (or data checksums) and full_page_writes = on
on the old primary from before the failover; without them re-clone it with
pg_basebackup -R. A server that is not ready is refused with the commands to
run (--data-dir fills in its data directory).`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeFrom(a.shardNames, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx()
			defer cancel()
			req := admin.AddReplicaRequest{Addr: args[1], DataDir: dataDir, ExpectVersion: a.g.ifVersion}
			var res admin.AddReplicaResult
			if err := a.explain(c.Do(ctx, "POST", "/v1/shards/"+url.PathEscape(args[0])+"/replicas", req, &res)); err != nil {
				return err
			}
			if a.g.output == "json" {
				return a.json(res)
			}
			fmt.Fprintln(a.out, res.Message)
			if res.FenceRemoved {
				fmt.Fprintln(a.out, "the failover's fence (default_transaction_read_only in postgresql.auto.conf) was reset on it")
			}
			if len(res.Warnings) > 0 {
				fmt.Fprintf(a.out, "warnings:\n  - %s\n", strings.Join(res.Warnings, "\n  - "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the standby's data directory on its host (only used in the commands a refusal suggests)")
	return cmd
}
