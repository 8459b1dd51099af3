//go:build !linux

package proxy

import (
	"errors"
	"net"
)

// wrapListener returns ln: accepted connections are net.TCPConns.
func wrapListener(ln net.Listener) (net.Listener, error) { return ln, nil }

// listenConfig keeps the runtime's per-connection keepalive.
func listenConfig() *net.ListenConfig {
	return &net.ListenConfig{KeepAlive: ClientKeepAlive}
}

// peerUser: peer authentication needs SO_PEERCRED (Linux).
func peerUser(net.Conn) (string, error) {
	return "", errors.New("peer authentication is supported on Linux only")
}
