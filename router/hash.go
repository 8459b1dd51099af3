package router

import (
	"encoding/binary"
	"math/bits"
)

// The hash functions below reproduce PostgreSQL's 64-bit ("extended") hash
// support functions with seed 0, bit for bit, as computed on a
// little-endian machine (x86-64, arm64): PostgreSQL loads 4-byte words from
// the input in native byte order, so a big-endian server would give other
// values. They are tested against a real server in hash_pg_test.go.
//
// The core is Bob Jenkins' lookup3 hash as adapted in PostgreSQL's
// src/common/hashfn.c (hash_bytes_extended, hash_bytes_uint32_extended):
// three 32-bit registers a, b, c start at 0x9e3779b9 + len + 3923095; a
// non-zero seed would be added to a (high word) and b (low word) followed by
// one mix — with seed 0, the only seed used here, that step is skipped; the
// input is added 12 bytes at a time with a mix after each block, the 0–11
// trailing bytes are added little-endian to a, b and c (c's lowest byte is
// left for the length, so c takes bytes 8..10 shifted up by 8); a final
// avalanche follows, and the result is (uint64(b) << 32) | c, returned by
// SQL as a signed int8.

const jenkinsInit = 0x9e3779b9 + 3923095

func mix(a, b, c uint32) (uint32, uint32, uint32) {
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	return a, b, c
}

func final(a, b, c uint32) (uint32, uint32, uint32) {
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return a, b, c
}

// HashBytes is PostgreSQL's hash_bytes_extended(k, len(k), 0) (a.k.a.
// hash_any_extended) as a signed 64-bit value.
func HashBytes(k []byte) int64 {
	a := uint32(jenkinsInit + uint32(len(k)))
	b, c := a, a
	for len(k) >= 12 {
		a += binary.LittleEndian.Uint32(k[0:])
		b += binary.LittleEndian.Uint32(k[4:])
		c += binary.LittleEndian.Uint32(k[8:])
		a, b, c = mix(a, b, c)
		k = k[12:]
	}
	// Trailing bytes; each case adds its byte and falls through.
	switch len(k) {
	case 11:
		c += uint32(k[10]) << 24
		fallthrough
	case 10:
		c += uint32(k[9]) << 16
		fallthrough
	case 9:
		c += uint32(k[8]) << 8
		fallthrough
	case 8:
		b += uint32(k[7]) << 24
		fallthrough
	case 7:
		b += uint32(k[6]) << 16
		fallthrough
	case 6:
		b += uint32(k[5]) << 8
		fallthrough
	case 5:
		b += uint32(k[4])
		fallthrough
	case 4:
		a += uint32(k[3]) << 24
		fallthrough
	case 3:
		a += uint32(k[2]) << 16
		fallthrough
	case 2:
		a += uint32(k[1]) << 8
		fallthrough
	case 1:
		a += uint32(k[0])
	}
	_, b, c = final(a, b, c)
	return int64(uint64(b)<<32 | uint64(c))
}

// hashString is HashBytes over a string's bytes without copying them.
func hashString(k string) int64 {
	a := uint32(jenkinsInit + uint32(len(k)))
	b, c := a, a
	le := func(s string) uint32 {
		return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
	}
	for len(k) >= 12 {
		a += le(k[0:])
		b += le(k[4:])
		c += le(k[8:])
		a, b, c = mix(a, b, c)
		k = k[12:]
	}
	switch len(k) {
	case 11:
		c += uint32(k[10]) << 24
		fallthrough
	case 10:
		c += uint32(k[9]) << 16
		fallthrough
	case 9:
		c += uint32(k[8]) << 8
		fallthrough
	case 8:
		b += uint32(k[7]) << 24
		fallthrough
	case 7:
		b += uint32(k[6]) << 16
		fallthrough
	case 6:
		b += uint32(k[5]) << 8
		fallthrough
	case 5:
		b += uint32(k[4])
		fallthrough
	case 4:
		a += uint32(k[3]) << 24
		fallthrough
	case 3:
		a += uint32(k[2]) << 16
		fallthrough
	case 2:
		a += uint32(k[1]) << 8
		fallthrough
	case 1:
		a += uint32(k[0])
	}
	_, b, c = final(a, b, c)
	return int64(uint64(b)<<32 | uint64(c))
}

// HashUint32 is PostgreSQL's hash_bytes_uint32_extended(k, 0): the hash of
// one 4-byte word, as used by the integer types.
func HashUint32(k uint32) int64 {
	a := uint32(jenkinsInit + 4)
	b, c := a, a
	a += k
	_, b, c = final(a, b, c)
	return int64(uint64(b)<<32 | uint64(c))
}

// HashInt8 is hashint8extended(v, 0). The high word is folded into the low
// one (XOR with the high word for v >= 0, with its complement for v < 0), so
// every value that fits in int4 hashes like hashint4extended(v, 0) and
// hashint2extended(v, 0): smallint, integer and bigint keys all use this.
func HashInt8(v int64) int64 {
	lo := uint32(v)
	hi := uint32(v >> 32)
	if v >= 0 {
		lo ^= hi
	} else {
		lo ^= ^hi
	}
	return HashUint32(lo)
}

// HashText is hashtextextended(s, 0) for a text/varchar value under a
// deterministic collation (the default and "C"; PostgreSQL hashes the raw
// bytes then). Nondeterministic (ICU, case-insensitive) collations hash a
// sort key instead and are not supported. s must be the value's bytes in the
// server encoding (UTF-8 here).
func HashText(s string) int64 { return hashString(s) }

// HashUUID is uuid_hash_extended(u, 0): the hash of the 16 bytes.
func HashUUID(u [16]byte) int64 { return HashBytes(u[:]) }
