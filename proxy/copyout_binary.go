package proxy

import (
	"bytes"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// Binary COPY TO over several shards: each shard sends a whole binary COPY
// file (an 11-byte signature, flags and a header extension, then tuples,
// then the trailer, a field count of -1). The client must get one file:
// the first shard's header, every shard's tuples, one trailer at the end.
// PostgreSQL sends the header in front of its first tuple (or of the
// trailer when there are none) and the trailer in a CopyData of its own
// after tuples; a tuple never starts with -1.

// joinBinaryCopy returns the part of one shard's CopyData payload that goes
// to the client: first is the shard's first CopyData, strip drops its file
// header (every shard but the first); a trailer is always dropped (the
// proxy sends one after the last shard).
func joinBinaryCopy(data []byte, first, strip bool) []byte {
	var header []byte
	if first {
		n, err := plan.BinaryCopyHeader(data)
		if err != nil || n == 0 {
			return data // not a file header: pass it on, the client will say so
		}
		header, data = data[:n], data[n:]
		if strip {
			header = nil
		}
	}
	if bytes.Equal(data, plan.BinaryCopyTrailer) {
		data = nil
	}
	if header == nil {
		return data
	}
	if len(data) == 0 {
		return header
	}
	return append(append(make([]byte, 0, len(header)+len(data)), header...), data...)
}
