// Package netio reads and writes the proxy's sockets with raw non-blocking
// system calls, to cut the CPU the Go scheduler spends around each one.
//
// A net.TCPConn's Read and Write enter the kernel through syscall.Syscall,
// which tells the scheduler the goroutine may block (entersyscall /
// exitsyscall). While a goroutine is "in a syscall", the runtime's monitor
// thread (sysmon) may take its P away and start or wake another thread to
// run other goroutines; when the syscall returns, the goroutine has to win a
// P back, often parking its thread. On a proxy that does four short socket
// calls per transaction this hand-off costs more than the calls themselves:
// thread wake-ups (futex), context switches and sysmon waking every 20 µs
// (nanosleep) to look for it.
//
// The sockets behind a net.Conn are non-blocking: a read or write returns at
// once (data, EAGAIN, or an error), so it never needs the hand-off. Wrap
// returns a net.Conn whose Read and Write issue read(2) / write(2) through
// syscall.RawSyscall inside syscall.RawConn's Read / Write, which keeps Go's
// netpoller (waiting for readiness on EAGAIN), deadlines and Close
// semantics. Errors look like the net package's: io.EOF at end of stream,
// *net.OpError otherwise (deadline errors satisfy net.Error.Timeout, a
// closed connection errors.Is net.ErrClosed).
//
// Listener (Linux) does the same for accepting: accept4 is a raw call, the
// socket options come from the listening socket and the accepted socket
// enters the netpoller as an *os.File, so a client connect costs no
// syscall.Syscall until its Close.
//
// Only Linux gets the raw path; elsewhere Wrap returns the connection as is.
package netio
