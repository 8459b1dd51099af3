//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package pool

import "syscall"

// peekAlive interprets a peek on an idle connection: only "nothing to read
// yet" means alive; data, EOF and errors mean dead.
func peekAlive(n int, err error) bool {
	return err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
}
