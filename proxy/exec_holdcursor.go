package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/planner"
	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/topology"
)

// heldRows are the rows of a cross-shard WITH HOLD cursor. Its query runs
// to the end at DECLARE (also outside a transaction block), its rows go to
// an unlinked temporary file as they arrive, and FETCH reads them from
// there: PostgreSQL too materializes a WITH HOLD cursor when the
// transaction that declared it commits, and a FETCH after that sees the
// rows as of the DECLARE. Nothing stays open on the shards, so the session
// is not pinned. Django's QuerySet.iterator() and psycopg2's named cursors
// with withhold=True declare such cursors outside transactions.
type heldRows struct {
	desc *pgproto3.RowDescription
	file *os.File
	w    *bufio.Writer
	r    *bufio.Reader
	keep []byte // other messages of the run (notices), for the client
	bad  error
	// inTx: declared inside a transaction block that has not ended yet; a
	// ROLLBACK of it drops the cursor, as on PostgreSQL.
	inTx bool
	// want is the result formats the FETCH being answered asked for (its
	// Bind's); the rows are stored in the cursor's own.
	want []int16
	vals [][]byte // Next's values (reused)
	row  []byte   // Next's DataRow body (reused)
}

// openHeldRead runs root with results in the formats rf and stores its
// rows; the cursorRead it returns serves FETCH, MOVE and CLOSE from them.
func (ss *session) openHeldRead(snap *topology.Snapshot, root plan.Operator, params planner.Params, rf []int16) (*cursorRead, error) {
	f, err := os.CreateTemp("", "shardproxy-cursor-*")
	if err != nil {
		return nil, fmt.Errorf("WITH HOLD cursor: %w", err)
	}
	os.Remove(f.Name()) // gone with the descriptor
	h := &heldRows{file: f, w: bufio.NewWriterSize(f, 64<<10)}
	saved, savedFilter := ss.out, ss.filter
	ss.out = nil
	ss.filter = h
	_, err = ss.runRows(snap, root, params, rf)
	h.take(ss)
	ss.filter = savedFilter
	ss.out = append(saved, h.keep...)
	if err == nil {
		err = h.bad
	}
	if err == nil {
		err = h.w.Flush()
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err == nil && h.desc == nil {
		err = errors.New("WITH HOLD cursor: the query sent no row description")
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	h.w = nil
	h.r = bufio.NewReaderSize(f, 64<<10)
	h.inTx = ss.inTransaction()
	return &cursorRead{ss: ss, rf: rf, res: h}, nil
}

// take consumes the complete messages buffered in ss.out (session.filter).
func (h *heldRows) take(ss *session) {
	err := eachMessage(ss.out, func(typ byte, body []byte) {
		switch typ {
		case msgRowDescription:
			h.desc = &pgproto3.RowDescription{}
			if err := h.desc.Decode(body); err != nil && h.bad == nil {
				h.bad = fmt.Errorf("WITH HOLD cursor: %w", err)
			}
		case msgDataRow:
			if h.bad == nil {
				_, h.bad = h.w.Write(appendMsg(nil, typ, body))
			}
		default:
			h.keep = appendMsg(h.keep, typ, body)
		}
	})
	if err != nil && h.bad == nil {
		h.bad = fmt.Errorf("WITH HOLD cursor: %w", err)
	}
	ss.out = ss.out[:0]
}

// RowDescription is the shape of the stored rows (cursorRows).
func (h *heldRows) RowDescription() *pgproto3.RowDescription { return h.desc }

// SetResultFormats records the formats the FETCH asks for (cursorRows):
// the rows are stored in the cursor's own, so Next refuses others.
func (h *heldRows) SetResultFormats(rf []int16) { h.want = rf }

// Next returns the next stored row's values (cursorRows).
func (h *heldRows) Next() ([][]byte, error) {
	var head [5]byte
	if _, err := io.ReadFull(h.r, head[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("WITH HOLD cursor: %w", err)
	}
	size := int(binary.BigEndian.Uint32(head[1:])) - 4
	h.row = slices.Grow(h.row[:0], size)[:size]
	if _, err := io.ReadFull(h.r, h.row); err != nil {
		return nil, fmt.Errorf("WITH HOLD cursor: %w", err)
	}
	vals, ok := splitDataRow(h.row, h.vals[:0])
	if !ok {
		return nil, errors.New("WITH HOLD cursor: a stored row is malformed")
	}
	h.vals = vals
	return vals, nil
}

// formatsErr is the 0A000 for a FETCH asking for other formats than the
// rows are stored in (the FETCH fails; the cursor stays usable).
func (h *heldRows) formatsErr() error {
	if h.formatsMatch() {
		return nil
	}
	return &plan.Unsupported{
		Message: "a WITH HOLD cursor over several shards returns its rows in the format of its DECLARE (text, or binary for DECLARE … BINARY)",
		Hint:    "fetch in that format, or declare the cursor BINARY to fetch binary rows",
	}
}

// formatsMatch reports whether the formats the FETCH asks for (none: the
// cursor's own) are those the rows are stored in.
func (h *heldRows) formatsMatch() bool {
	if len(h.want) == 0 {
		return true
	}
	for i, f := range h.desc.Fields {
		w := h.want[0]
		if len(h.want) > 1 {
			if i >= len(h.want) {
				return false
			}
			w = h.want[i]
		}
		if w != f.Format {
			return false
		}
	}
	return true
}

// close drops the stored rows.
func (h *heldRows) close() {
	if h.file != nil {
		h.file.Close()
		h.file = nil
	}
}

// heldCursorsAtTxEnd drops, for the COMMIT or ROLLBACK o that ends the
// client's transaction, the WITH HOLD cursors the transaction declared if
// it rolls back (a COMMIT of a failed transaction does too).
func (ss *session) heldCursorsAtTxEnd(o *plan.Session) {
	if o.Name == "rollback" || ss.txAborted || ss.txStatus == 'E' {
		ss.closeHeldCursors(true)
	}
}

// closeHeldCursors drops the WITH HOLD cursors: all of them (the session
// ends, DISCARD ALL), or those the transaction now rolled back declared.
func (ss *session) closeHeldCursors(rolledBackOnly bool) {
	for name, cr := range ss.multiCursor {
		if h := cr.spool(); h != nil && (!rolledBackOnly || h.inTx) {
			h.close()
			delete(ss.multiCursor, name)
		}
	}
}
