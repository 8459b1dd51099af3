package main

import (
	"context"
	"errors"
	"fmt"
	"os/signal"

	"github.com/spf13/cobra"

	"github.com/shardproxy/shardproxy/proxy/config"
)

func newRootCommand() *cobra.Command {
	var configPath string
	var cf clusterFlags
	root := &cobra.Command{
		Use:   "shardproxy --config FILE",
		Short: "PostgreSQL sharding proxy and connection pooler",
		Long: `shardproxy sits between PostgreSQL clients and one or more PostgreSQL
servers: it pools server connections (transaction or session mode) and
routes statements to shards.

Signals: SIGTERM/SIGINT shut down gracefully (transactions may finish for
shutdown_timeout); SIGHUP reloads users, auth and pool settings from the
config file without dropping clients.

Several proxies share one topology through Raft: start the first with
--raft-dir DIR (it bootstraps a cluster of itself and keeps the topology in
DIR across restarts), the others with --raft-dir and --join ADMIN_ADDR of
a running one. Change the topology with shardctl (docs/admin.md).

To try it without a config file, run "shardproxy dev".`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return errors.New("--config FILE is required (or run \"shardproxy dev\" for a local setup)")
			}
			load := func() (config.Config, error) {
				c, err := config.Load(configPath)
				if err != nil {
					return c, err
				}
				cf.apply(cmd, &c)
				if err := c.Validate(); err != nil {
					return c, fmt.Errorf("%s: config: %w", configPath, err)
				}
				return c, nil
			}
			cfg, err := load()
			if err != nil {
				return err
			}
			sigs := notifySignals()
			defer signal.Stop(sigs)
			log, level := newLogger(cfg)
			reload := func() (config.Config, error) {
				c, err := load()
				if err == nil {
					setLevel(level, c)
				}
				return c, err
			}
			return runProxy(context.Background(), cfg, log, sigs, reload, nil)
		},
	}
	root.SetVersionTemplate(fmt.Sprintf("shardproxy %s\n", "{{.Version}}"))
	root.Flags().StringVarP(&configPath, "config", "c", "", "YAML config file (see docs/config.md)")
	addClusterFlags(root.Flags(), &cf)
	root.AddCommand(newDevCommand())
	return root
}
