//go:build linux

package netio

import (
	"syscall"
	"unsafe"
)

const supported = true

// rawRead is read(2) without telling the scheduler: fd must be non-blocking.
func rawRead(fd uintptr, b []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), errno
}

// rawWrite is write(2) without telling the scheduler: fd must be non-blocking.
func rawWrite(fd uintptr, b []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), errno
}
