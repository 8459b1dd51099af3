package plan

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/shardproxy/shardproxy/router"
)

// COPY FROM STDIN in binary format (pgx's CopyFrom and psycopg 3's binary
// copy send it): an 11-byte signature, a flags word and a header
// extension, then tuples (a 16-bit field count, each field a 32-bit length,
// -1 for NULL, and its bytes in the column type's binary send format), and
// an optional trailer (field count -1). The header goes to every shard
// first, each tuple to the shard of its key field, the trailer to every
// shard.

// copySignature opens every binary COPY stream; BinaryCopyTrailer ends it.
var (
	copySignature     = []byte("PGCOPY\n\xff\r\n\x00")
	BinaryCopyTrailer = []byte{0xFF, 0xFF}
)

// BinaryCopyHeader returns the length of the binary COPY file header
// (signature, flags, header extension) at the start of b, 0 when b does
// not hold all of it yet, or a 22P04 error when b cannot start one.
func BinaryCopyHeader(b []byte) (int, error) {
	const fixed = 11 + 4 + 4
	if !bytes.HasPrefix(b, copySignature[:min(len(b), len(copySignature))]) {
		return 0, badCopySignature()
	}
	if len(b) < fixed {
		return 0, nil
	}
	ext := int(int32(binary.BigEndian.Uint32(b[15:19])))
	if ext < 0 {
		return 0, &Error{Code: "22P04", Message: "invalid COPY file header (missing length)"}
	}
	if len(b) < fixed+ext {
		return 0, nil
	}
	return fixed + ext, nil
}

// writeBinary is Write for FORMAT binary.
func (s *CopySplitter) writeBinary(data []byte, emit func(shard string, row []byte) error) error {
	s.buf = append(s.buf, data...)
	start := 0
	for !s.done {
		n, err := s.nextBinary(s.buf[start:], emit)
		if err != nil {
			return err
		}
		if n == 0 {
			break // the rest of this piece is still on the way
		}
		start += n
	}
	if s.done {
		s.buf = s.buf[:0]
		return nil
	}
	k := copy(s.buf, s.buf[start:])
	s.buf = s.buf[:k]
	return nil
}

// nextBinary consumes the header, one tuple or the trailer from the start
// of b and returns how many bytes it used (0: b does not hold all of it).
func (s *CopySplitter) nextBinary(b []byte, emit func(string, []byte) error) (int, error) {
	if !s.hdrDone {
		n, err := BinaryCopyHeader(b)
		if err != nil || n == 0 {
			return 0, err
		}
		s.hdrDone = true
		return n, s.toEveryShard(b[:n], emit)
	}
	if len(b) < 2 {
		return 0, nil
	}
	fields := int(int16(binary.BigEndian.Uint16(b)))
	if fields == -1 {
		s.done = true
		return 2, s.toEveryShard(BinaryCopyTrailer, emit)
	}
	if fields <= s.cs.KeyColumnIndex {
		return 0, &Error{Code: "22P04", Message: fmt.Sprintf("row field count is %d, the distribution key column %q is field %d (COPY row %d)",
			fields, s.cs.KeyColumn, s.cs.KeyColumnIndex+1, s.rows+1)}
	}
	pos := 2
	var key []byte
	null := false
	for f := 0; f < fields; f++ {
		if len(b) < pos+4 {
			return 0, nil
		}
		size := int(int32(binary.BigEndian.Uint32(b[pos:])))
		pos += 4
		if size < -1 {
			return 0, &Error{Code: "22P04", Message: fmt.Sprintf("invalid field size %d (COPY row %d)", size, s.rows+1)}
		}
		if size == -1 {
			null = null || f == s.cs.KeyColumnIndex
			continue
		}
		if len(b) < pos+size {
			return 0, nil
		}
		if f == s.cs.KeyColumnIndex {
			key = b[pos : pos+size]
		}
		pos += size
	}
	if null {
		return 0, s.nullKey()
	}
	v, err := router.KeyFromBinary(s.cs.KeyType, key)
	if err != nil {
		return 0, err
	}
	shard, err := s.r.ShardForKey(s.cs.Distribution, v)
	if err != nil {
		return 0, err
	}
	s.rows++
	return pos, emit(shard, b[:pos])
}

func (s *CopySplitter) toEveryShard(part []byte, emit func(string, []byte) error) error {
	for _, sh := range s.cs.Shards {
		if err := emit(sh, part); err != nil {
			return err
		}
	}
	return nil
}

func badCopySignature() error {
	return &Error{Code: "22P04", Message: "COPY file signature not recognized"}
}
