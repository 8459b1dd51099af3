//go:build !linux

package netio

import "syscall"

const supported = false

func rawRead(fd uintptr, b []byte) (int, syscall.Errno)  { panic("netio: raw reads need Linux") }
func rawWrite(fd uintptr, b []byte) (int, syscall.Errno) { panic("netio: raw writes need Linux") }
