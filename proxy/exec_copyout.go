package proxy

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/shardproxy/shardproxy/planner"
	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/topology"
)

// execCopyOut runs a plan.CopyOut: the query's rows, merged by the proxy in
// text format, go to the client as COPY data, encoded as PostgreSQL's COPY
// TO encodes them (text: backslash escapes and the NULL string; csv:
// quoting where needed), after a CopyOutResponse and the header line, and
// the statement ends with CopyDone and "COPY n".
func (ss *session) execCopyOut(snap *topology.Snapshot, o *plan.CopyOut, params planner.Params) (string, error) {
	w := &copyOutRows{op: o}
	saved := ss.filter
	ss.filter = w
	_, err := ss.runRows(snap, o.Query, params, []int16{0})
	w.take(ss)
	ss.filter = saved
	if err == nil {
		err = w.bad
	}
	if err != nil {
		return "", err
	}
	ss.out = appendEmpty(ss.out, msgCopyDone)
	return "COPY " + strconv.Itoa(w.rows), nil
}

// copyOutRows turns the row messages a plan writes to the client into COPY
// data (it sees ss.out before every write to the client: flushClient).
type copyOutRows struct {
	op      *plan.CopyOut
	started bool // CopyOutResponse sent
	single  bool // one column (a lone \. is quoted in CSV)
	rows    int
	spare   []byte // the buffer ss.out had before the last take: the next take writes into it
	bad     error
}

// take rewrites the complete messages in ss.out (into the spare buffer,
// which then becomes ss.out).
func (w *copyOutRows) take(ss *session) {
	out := w.spare[:0]
	err := eachMessage(ss.out, func(typ byte, body []byte) {
		switch typ {
		case msgRowDescription:
			if !w.started {
				out = w.start(out, body)
			}
		case msgDataRow:
			out = w.row(out, body)
		case msgCommandComplete:
			// The query's own tag: the statement ends with COPY n.
		default:
			out = appendMsg(out, typ, body)
		}
	})
	if err != nil {
		w.bad = fmt.Errorf("copy out: %w", err)
	}
	w.spare, ss.out = ss.out[:0], out
}

// beginCopyData starts a CopyData message in out; endCopyData sets its
// length once its line is appended.
func beginCopyData(out []byte) ([]byte, int) { return append(out, msgCopyData, 0, 0, 0, 0), len(out) }

func endCopyData(out []byte, start int) []byte {
	out = append(out, '\n')
	putLen(out[start+1:], len(out)-start-1)
	return out
}

// start sends the CopyOutResponse (every column text) and the header line.
func (w *copyOutRows) start(out, desc []byte) []byte {
	w.started = true
	if len(desc) < 2 {
		w.bad = fmt.Errorf("copy out: malformed RowDescription")
		return out
	}
	ncols := int(binary.BigEndian.Uint16(desc))
	w.single = ncols == 1
	body := []byte{0}
	body = binary.BigEndian.AppendUint16(body, uint16(ncols))
	for range ncols {
		body = binary.BigEndian.AppendUint16(body, 0)
	}
	out = appendMsg(out, msgCopyOutResponse, body)
	if !w.op.Header {
		return out
	}
	out, start := beginCopyData(out)
	rest := desc[2:]
	for i := range ncols {
		name, r, ok := cstring(rest)
		if !ok || len(r) < 18 {
			w.bad = fmt.Errorf("copy out: malformed RowDescription")
			return out[:start]
		}
		rest = r[18:]
		if i > 0 {
			out = append(out, w.op.Delimiter)
		}
		out = w.field(out, name)
	}
	return endCopyData(out, start)
}

// row sends one DataRow (text values) as a COPY line.
func (w *copyOutRows) row(out, body []byte) []byte {
	if len(body) < 2 {
		w.bad = fmt.Errorf("copy out: malformed DataRow")
		return out
	}
	n := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	out, start := beginCopyData(out)
	for i := range n {
		if len(body) < 4 {
			w.bad = fmt.Errorf("copy out: malformed DataRow")
			return out[:start]
		}
		size := int(int32(binary.BigEndian.Uint32(body)))
		body = body[4:]
		if i > 0 {
			out = append(out, w.op.Delimiter)
		}
		if size < 0 {
			out = append(out, w.op.Null...)
			continue
		}
		if len(body) < size {
			w.bad = fmt.Errorf("copy out: malformed DataRow")
			return out[:start]
		}
		out = w.field(out, body[:size])
		body = body[size:]
	}
	w.rows++
	return endCopyData(out, start)
}

// field appends one non-NULL value in the COPY format.
func (w *copyOutRows) field(dst, v []byte) []byte {
	if w.op.Format == "csv" {
		return w.csvField(dst, v)
	}
	d := w.op.Delimiter
	for _, c := range v {
		switch e := textCopyEscapes[c]; {
		case c == '\\' || c == d:
			dst = append(dst, '\\', c)
		case e != 0:
			dst = append(dst, '\\', e)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// textCopyEscapes maps the control characters COPY's text format writes
// as backslash escapes to their letter.
var textCopyEscapes = [256]byte{'\b': 'b', '\f': 'f', '\n': 'n', '\r': 'r', '\t': 't', '\v': 'v'}

// csvField quotes a value when it holds the delimiter, the quote or a line
// break, equals the NULL string, or is a lone \. in a one-column COPY, as
// PostgreSQL's CSV output does; inside quotes, the quote and escape
// characters are preceded by the escape character.
func (w *copyOutRows) csvField(dst, v []byte) []byte {
	q, e, d := w.op.Quote, w.op.Escape, w.op.Delimiter
	quote := string(v) == w.op.Null || (w.single && string(v) == `\.`)
	for _, c := range v {
		if quote {
			break
		}
		quote = c == d || c == q || c == '\n' || c == '\r'
	}
	if !quote {
		return append(dst, v...)
	}
	dst = append(dst, q)
	for _, c := range v {
		if c == q || c == e {
			dst = append(dst, e)
		}
		dst = append(dst, c)
	}
	return append(dst, q)
}
