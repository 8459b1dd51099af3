package router

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/shardproxy/shardproxy/topology"
)

// Value is a typed distribution-key value. Make one with IntKey, TextKey,
// UUIDKey, KeyFromText or KeyFromBinary; the zero Value is invalid.
type Value struct {
	Type topology.KeyType
	Int  int64    // Type == topology.Int
	Text string   // Type == topology.Text
	UUID [16]byte // Type == topology.UUID
}

// IntKey is a smallint, integer or bigint key.
func IntKey(v int64) Value { return Value{Type: topology.Int, Int: v} }

// TextKey is a text or varchar key (bytes in UTF-8, the server encoding).
func TextKey(s string) Value { return Value{Type: topology.Text, Text: s} }

// UUIDKey is a uuid key.
func UUIDKey(u [16]byte) Value { return Value{Type: topology.UUID, UUID: u} }

// Hash returns PostgreSQL's hash of the value: hashint8extended,
// hashtextextended or uuid_hash_extended with seed 0. It returns 0 for the
// zero Value.
func (v Value) Hash() int64 {
	switch v.Type {
	case topology.Int:
		return HashInt8(v.Int)
	case topology.Text:
		return HashText(v.Text)
	case topology.UUID:
		return HashUUID(v.UUID)
	}
	return 0
}

// Canonical returns the value's canonical text (topology.CanonicalKey): the
// key of list values and overrides, and how errors print it.
func (v Value) Canonical() string {
	switch v.Type {
	case topology.Int:
		return strconv.FormatInt(v.Int, 10)
	case topology.Text:
		return v.Text
	case topology.UUID:
		return topology.FormatUUID(v.UUID)
	}
	return ""
}

// String is Canonical, for %v.
func (v Value) String() string { return v.Canonical() }

// KeyError is a key value that cannot be parsed as its key type, with
// PostgreSQL's SQLSTATE for the same input: 22P02
// (invalid_text_representation) for bad syntax, 22003
// (numeric_value_out_of_range) for an integer outside bigint, 22021
// (character_not_in_repertoire) for text that is not valid UTF-8 or holds
// a NUL byte.
type KeyError struct {
	Type topology.KeyType
	Msg  string
	Code string // "" = 22P02
}

func (e *KeyError) Error() string { return e.Msg }

// SQLState returns the error's SQLSTATE.
func (e *KeyError) SQLState() string {
	if e.Code == "" {
		return "22P02"
	}
	return e.Code
}

// CheckText returns PostgreSQL's error (22021) for a text value that is
// not valid UTF-8 or holds a NUL byte, which it raises before any type's
// input function; nil otherwise.
func CheckText(text string) error {
	if utf8.ValidString(text) && strings.IndexByte(text, 0) < 0 {
		return nil
	}
	return &KeyError{Msg: fmt.Sprintf("invalid byte sequence for encoding \"UTF8\" in %q", text), Code: "22021"}
}

// KeyFromText parses a key in PostgreSQL's text format — a Bind parameter in
// format 0 or the text of a SQL literal — as the given key type, after
// CheckText:
//   - Int: optional surrounding whitespace and sign, decimal digits, within
//     int64 (what int2in/int4in/int8in accept on PostgreSQL 15).
//   - Text: taken as is.
//   - UUID: any form uuid_in accepts (see topology.ParseUUID).
func KeyFromText(kt topology.KeyType, text string) (Value, error) {
	if err := CheckText(text); err != nil {
		return Value{}, err
	}
	switch kt {
	case topology.Int:
		v, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
		if errors.Is(err, strconv.ErrRange) {
			return Value{}, &KeyError{kt, fmt.Sprintf("value %q is out of range for type bigint", text), "22003"}
		}
		if err != nil {
			return Value{}, &KeyError{kt, fmt.Sprintf("invalid input syntax for integer key: %q", text), ""}
		}
		return IntKey(v), nil
	case topology.Text:
		return TextKey(text), nil
	case topology.UUID:
		u, err := topology.ParseUUID(text)
		if err != nil {
			return Value{}, &KeyError{kt, err.Error(), ""}
		}
		return UUIDKey(u), nil
	}
	return Value{}, &KeyError{kt, fmt.Sprintf("unknown key type %q", kt), ""}
}

// KeyFromBinary parses a key in PostgreSQL's binary format (a Bind
// parameter in format 1):
//   - Int: 2, 4 or 8 bytes, big-endian two's complement (int2send,
//     int4send, int8send) — the length says which.
//   - Text: the raw bytes (textsend).
//   - UUID: 16 bytes (uuid_send).
func KeyFromBinary(kt topology.KeyType, b []byte) (Value, error) {
	switch kt {
	case topology.Int:
		switch len(b) {
		case 2:
			return IntKey(int64(int16(binary.BigEndian.Uint16(b)))), nil
		case 4:
			return IntKey(int64(int32(binary.BigEndian.Uint32(b)))), nil
		case 8:
			return IntKey(int64(binary.BigEndian.Uint64(b))), nil
		}
		return Value{}, &KeyError{kt, fmt.Sprintf("binary integer key must be 2, 4 or 8 bytes, got %d", len(b)), ""}
	case topology.Text:
		return KeyFromText(kt, string(b))
	case topology.UUID:
		if len(b) != 16 {
			return Value{}, &KeyError{kt, fmt.Sprintf("binary uuid key must be 16 bytes, got %d", len(b)), ""}
		}
		var u [16]byte
		copy(u[:], b)
		return UUIDKey(u), nil
	}
	return Value{}, &KeyError{kt, fmt.Sprintf("unknown key type %q", kt), ""}
}

// KeyFromParam parses a Bind parameter value with its format code (0 text,
// 1 binary).
func KeyFromParam(kt topology.KeyType, format int16, b []byte) (Value, error) {
	switch format {
	case 0:
		return KeyFromText(kt, string(b))
	case 1:
		return KeyFromBinary(kt, b)
	}
	return Value{}, &KeyError{kt, fmt.Sprintf("unknown parameter format code %d", format), ""}
}
