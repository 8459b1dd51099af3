//go:build darwin || freebsd || netbsd || openbsd || dragonfly

package pool

import "syscall"

const peekSupported = true

// peek looks at the socket without consuming or blocking.
func peek(fd uintptr, buf []byte) (int, error) {
	n, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n, err
}
