//go:build !linux

package proxy

import "net"

// listenConfig keeps the runtime's per-connection keepalive.
func listenConfig() *net.ListenConfig {
	return &net.ListenConfig{KeepAlive: ClientKeepAlive}
}
