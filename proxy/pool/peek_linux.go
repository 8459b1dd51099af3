//go:build linux

package pool

import (
	"syscall"
	"unsafe"
)

const peekSupported = true

// peek looks at the socket without consuming or blocking. It is a raw
// system call (no scheduler hand-off, see package proxy/netio): with
// MSG_DONTWAIT it returns at once.
func peek(fd uintptr, buf []byte) (int, error) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return int(n), errno
	}
	return int(n), nil
}
