package main

import (
	"fmt"
	"net/url"

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
