//go:build !linux

package proxy

import "net"

// wrapListener returns ln: accepted connections are net.TCPConns.
func wrapListener(ln net.Listener) (net.Listener, error) { return ln, nil }

// listenConfig keeps the runtime's per-connection keepalive.
func listenConfig() *net.ListenConfig {
	return &net.ListenConfig{KeepAlive: ClientKeepAlive}
}
