package plan

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/topology"
)

// CopySplitter turns the client's CopyData stream for a CopySplit into
// per-shard rows. It is pure (no I/O) and not safe for concurrent use: one
// per COPY.
//
// It follows PostgreSQL's COPY FROM line rules: in text format a row ends
// at a newline not preceded by an escaping backslash; in CSV format at a
// newline outside quotes (quoted fields may hold newlines, delimiters and
// doubled or escaped quotes). A line holding only `\.` ends the data and is
// not forwarded. With Header, the first line goes to every shard (each
// shard's COPY skips or checks it). Rows are forwarded byte for byte,
// including their line ending.
type CopySplitter struct {
	cs      *CopySplit
	r       *router.Router
	buf     []byte
	pos     int // bytes of buf already scanned for the current row
	esc     bool
	inQ     bool
	lastEs  bool
	rows    int
	hdrDone bool
	done    bool
}

// NewCopySplitter prepares a splitter for cs over snap. cs.KeyColumnIndex
// must be resolved (≥ 0).
func NewCopySplitter(cs *CopySplit, snap *topology.Snapshot) (*CopySplitter, error) {
	if cs.KeyColumnIndex < 0 {
		return nil, &Error{Code: "XX000", Message: "COPY key column position is not resolved"}
	}
	if cs.Format != "text" && cs.Format != "csv" && cs.Format != "binary" {
		return nil, &Unsupported{Message: fmt.Sprintf("COPY format %s cannot be split across shards", cs.Format), Hint: "use text, csv or binary format"}
	}
	return &CopySplitter{cs: cs, r: router.For(snap)}, nil
}

// Rows returns the number of data rows routed so far (not the header).
func (s *CopySplitter) Rows() int { return s.rows }

// Write consumes the next CopyData payload (any chunking) and calls emit
// for every complete row with the shard it belongs to. row is valid only
// during the call. An error (bad key, key on no shard) stops the COPY; it
// carries a SQLSTATE.
func (s *CopySplitter) Write(data []byte, emit func(shard string, row []byte) error) error {
	if s.done {
		return nil
	}
	if s.cs.Format == "binary" {
		return s.writeBinary(data, emit) // copy_binary.go
	}
	s.buf = append(s.buf, data...)
	start := 0
	csv := s.cs.Format == "csv"
	q, e := s.cs.Quote, s.cs.Escape
	for i := s.pos; i < len(s.buf); i++ {
		c := s.buf[i]
		if csv {
			if q == e {
				if c == q {
					s.inQ = !s.inQ
				}
			} else {
				if s.inQ && c == e {
					s.lastEs = !s.lastEs
				}
				if c == q && !s.lastEs {
					s.inQ = !s.inQ
				}
				if c != e {
					s.lastEs = false
				}
			}
			if c != '\n' || s.inQ {
				continue
			}
		} else {
			if s.esc {
				s.esc = false
				continue
			}
			if c == '\\' {
				s.esc = true
				continue
			}
			if c != '\n' {
				continue
			}
		}
		if err := s.row(s.buf[start:i+1], emit); err != nil {
			return err
		}
		start = i + 1
		if s.done {
			s.buf = s.buf[:0]
			s.pos = 0
			return nil
		}
	}
	n := copy(s.buf, s.buf[start:])
	s.buf = s.buf[:n]
	s.pos = n
	return nil
}

// Close handles a last row without a trailing newline. It fails if the
// data ends inside a quoted CSV field.
func (s *CopySplitter) Close(emit func(shard string, row []byte) error) error {
	if s.done || len(s.buf) == 0 {
		return nil
	}
	if s.cs.Format == "binary" {
		return &Error{Code: "22P04", Message: "unexpected EOF in COPY data"}
	}
	if s.inQ {
		return &Error{Code: "22P04", Message: "unterminated CSV quoted field"}
	}
	row := s.buf
	s.buf = nil
	return s.row(row, emit)
}

func (s *CopySplitter) row(row []byte, emit func(string, []byte) error) error {
	line := bytes.TrimSuffix(bytes.TrimSuffix(row, []byte("\n")), []byte("\r"))
	if string(line) == `\.` {
		s.done = true
		return nil
	}
	if s.cs.Header && !s.hdrDone {
		s.hdrDone = true
		return s.toEveryShard(row, emit)
	}
	key, null, err := s.field(line)
	if err != nil {
		return err
	}
	if null {
		return s.nullKey()
	}
	v, err := router.KeyFromText(s.cs.KeyType, key)
	if err != nil {
		return err
	}
	shard, err := s.r.ShardForKey(s.cs.Distribution, v)
	if err != nil {
		return err
	}
	s.rows++
	return emit(shard, row)
}

func (s *CopySplitter) nullKey() error {
	return &Error{Code: "23502", Message: fmt.Sprintf("null value in distribution key column %q of relation %q (COPY row %d)", s.cs.KeyColumn, s.cs.Table, s.rows+1)}
}

// field returns the decoded key field of one line (without its newline).
func (s *CopySplitter) field(line []byte) (string, bool, error) {
	raw, quoted, ok := SplitCopyField(line, s.cs.KeyColumnIndex, s.cs.Format == "csv", s.cs.Delimiter, s.cs.Quote, s.cs.Escape)
	if !ok {
		return "", false, &Error{Code: "22P04", Message: fmt.Sprintf("missing data for column %q (COPY row %d)", s.cs.KeyColumn, s.rows+1)}
	}
	if s.cs.Format == "csv" {
		if !quoted && string(raw) == s.cs.Null {
			return "", true, nil
		}
		return unquoteCSV(raw, s.cs.Quote, s.cs.Escape), false, nil
	}
	if string(raw) == s.cs.Null {
		return "", true, nil
	}
	v, err := unescapeText(raw)
	return v, false, err
}

// SplitCopyField returns the raw bytes of field idx (0-based) of one COPY
// line without its line ending, in text format (delimiters escaped with a
// backslash do not split) or CSV (delimiters inside quotes do not split).
// quoted reports whether a CSV field contains a quote character; ok is
// false when the line has fewer fields.
func SplitCopyField(line []byte, idx int, csv bool, delim, quote, escape byte) (raw []byte, quoted bool, ok bool) {
	field, start := 0, 0
	inQ, esc, lastEs := false, false, false
	for i := 0; i <= len(line); i++ {
		if i < len(line) {
			c := line[i]
			if csv {
				if c == quote {
					quoted = quoted || field == idx
				}
				if quote == escape {
					if c == quote {
						inQ = !inQ
					}
				} else {
					if inQ && c == escape {
						lastEs = !lastEs
					}
					if c == quote && !lastEs {
						inQ = !inQ
					}
					if c != escape {
						lastEs = false
					}
				}
				if c != delim || inQ {
					continue
				}
			} else {
				if esc {
					esc = false
					continue
				}
				if c == '\\' {
					esc = true
					continue
				}
				if c != delim {
					continue
				}
			}
		}
		if field == idx {
			return line[start:i], quoted, true
		}
		field++
		start = i + 1
	}
	return nil, false, false
}

func unquoteCSV(raw []byte, quote, escape byte) string {
	var b []byte
	inQ := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case !inQ && c == quote:
			inQ = true
		case inQ && c == escape && i+1 < len(raw) && (raw[i+1] == quote || raw[i+1] == escape) && !(quote == escape && raw[i+1] != quote):
			b = append(b, raw[i+1])
			i++
		case inQ && c == quote:
			inQ = false
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// unescapeText decodes COPY text-format backslash sequences.
func unescapeText(raw []byte) (string, error) {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw), nil
	}
	var b []byte
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' || i+1 == len(raw) {
			b = append(b, c)
			continue
		}
		i++
		switch d := raw[i]; d {
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'v':
			b = append(b, '\v')
		case 'x':
			j := i + 1
			for j < len(raw) && j < i+3 && isHexDigit(raw[j]) {
				j++
			}
			if j == i+1 {
				b = append(b, 'x')
				continue
			}
			v, _ := strconv.ParseUint(string(raw[i+1:j]), 16, 8)
			b = append(b, byte(v))
			i = j - 1
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := i
			for j < len(raw) && j < i+3 && raw[j] >= '0' && raw[j] <= '7' {
				j++
			}
			v, _ := strconv.ParseUint(string(raw[i:j]), 8, 16)
			b = append(b, byte(v))
			i = j - 1
		default:
			b = append(b, d)
		}
	}
	return string(b), nil
}

func isHexDigit(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// CopyOut is COPY (query) TO STDOUT whose query the shards cannot answer
// by concatenation: the proxy runs Query (text results) and writes its rows
// as COPY data in Format ("text" or "csv") with the statement's options,
// then CopyDone and "COPY n".
type CopyOut struct {
	Query     Operator
	Format    string
	Delimiter byte
	Quote     byte // csv
	Escape    byte // csv
	Null      string
	Header    bool
}

func (o *CopyOut) Inputs() []Operator { return []Operator{o.Query} }
func (o *CopyOut) Describe() Description {
	f := map[string]any{"format": o.Format}
	if o.Header {
		f["header"] = true
	}
	return Description{Name: "CopyOut", Fields: f}
}
