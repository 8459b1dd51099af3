package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/shardproxy/shardproxy/proxy/admin"
	"github.com/shardproxy/shardproxy/proxy/config"
)

const (
	envServer = "SHARDCTL_SERVER"
	envToken  = "SHARDCTL_TOKEN"
)

// globals are the persistent flags.
type globals struct {
	server, token, output string
	timeout               time.Duration
	ifVersion             uint64
}

// app is what every command uses: the flags and an API client.
type app struct {
	g   globals
	out io.Writer
}

func newRootCommand() *cobra.Command {
	a := &app{}
	root := &cobra.Command{
		Use:   "shardctl",
		Short: "Operate a shardproxy cluster through the admin API of any proxy",
		Long: `shardctl talks to the admin HTTP API (admin_listen) of any shardproxy.
Reads are answered by that proxy; writes reach the Raft leader, which commits
them before shardctl returns, and every proxy routes by the change within about
a second.

The server and token come from --server/--token or SHARDCTL_SERVER/SHARDCTL_TOKEN.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			a.out = cmd.OutOrStdout()
			if !cmd.Flags().Changed("token") {
				a.g.token = os.Getenv(envToken)
			}
			if a.g.output != "table" && a.g.output != "json" {
				return fmt.Errorf("-o must be table or json, got %q", a.g.output)
			}
			return nil
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&a.g.server, "server", envOr(envServer, "http://127.0.0.1:9930"), "admin address of any shardproxy (host:port or URL; env "+envServer+")")
	f.StringVar(&a.g.token, "token", "", "admin token (the proxies' admin_token; env "+envToken+")")
	f.StringVarP(&a.g.output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&a.g.timeout, "timeout", 30*time.Second, "how long to wait for an answer")
	f.Uint64Var(&a.g.ifVersion, "if-version", 0, "writes: apply only if the topology is still at this version (compare-and-swap)")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))

	root.AddCommand(
		a.statusCommand(),
		a.withReplicaCommands(a.shardsCommand()),
		a.tablesCommand(),
		a.rangesCommand(),
		a.keyCommand(),
		a.directoryCommand(),
		a.nodesCommand(),
		a.failoverCommand(),
		a.rebalanceCommand(),
		a.moveCommand(),
	)
	return root
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// client returns an API client for --server.
func (a *app) client() (*admin.Client, error) {
	base, err := config.AdminURL(a.g.server)
	if err != nil {
		return nil, fmt.Errorf("--server: %v", err)
	}
	return &admin.Client{BaseURL: base, Token: a.g.token, RetryFor: 5 * time.Second}, nil
}

func (a *app) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), a.g.timeout)
}

// get calls GET path and decodes into out.
func (a *app) get(path string, q url.Values, out any) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	ctx, cancel := a.ctx()
	defer cancel()
	return a.explain(c.Get(ctx, path, q, out))
}

// write calls a write endpoint and prints its result.
func (a *app) write(method, path string, in any) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	ctx, cancel := a.ctx()
	defer cancel()
	var res admin.WriteResult
	if err := a.explain(c.Do(ctx, method, path, in, &res)); err != nil {
		return err
	}
	if a.g.output == "json" {
		return a.json(res)
	}
	fmt.Fprintf(a.out, "%s\ntopology version %d\n", res.Message, res.Version)
	if res.Warning != "" {
		fmt.Fprintf(a.out, "warning: %s\n", res.Warning)
	}
	return nil
}

// explain adds what to do next to transport errors.
func (a *app) explain(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, admin.ErrUnreachable) {
		return fmt.Errorf("%v\nhint: is a shardproxy running there with admin_listen set? Point --server (or %s) at a proxy's admin address", err, envServer)
	}
	var ae *admin.APIError
	if errors.As(err, &ae) && ae.Code == admin.CodeUnauthorized && a.g.token == "" {
		return fmt.Errorf("%s\nhint: pass --token or set %s", ae.Msg, envToken)
	}
	return err
}

func (a *app) json(v any) error {
	enc := json.NewEncoder(a.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes rows aligned under header.
func (a *app) table(header []string, rows [][]string) {
	tw := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// humanBytes prints 1536 as "1.5 kB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// completeFrom returns a completion function listing names the server
// knows (errors mean no suggestions).
func (a *app) completeFrom(list func() ([]string, error), maxArgs int) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) >= maxArgs {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names, err := list()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}
