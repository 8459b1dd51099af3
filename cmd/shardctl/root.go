package main

import "github.com/spf13/cobra"

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "shardctl",
		Short:         "Operate a shardproxy cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("proxy", "http://127.0.0.1:9930", "admin API address of any shardproxy node")
	return root
}
