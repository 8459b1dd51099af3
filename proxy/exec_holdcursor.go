package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

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
	desc []byte // the RowDescription body
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
	return &cursorRead{ss: ss, rf: rf, spool: h}, nil
}

// take consumes the complete messages buffered in ss.out (session.filter).
func (h *heldRows) take(ss *session) {
	err := eachMessage(ss.out, func(typ byte, body []byte) {
		switch typ {
		case msgRowDescription:
			h.desc = append([]byte(nil), body...)
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

// rowDescription is the shape of the stored rows.
func (h *heldRows) rowDescription() *pgproto3.RowDescription {
	var rd pgproto3.RowDescription
	if err := rd.Decode(h.desc); err != nil {
		return &pgproto3.RowDescription{}
	}
	return &rd
}

// send appends up to limit stored rows (0: all that are left) to the
// client's output, or skips them (MOVE), and returns how many.
func (h *heldRows) send(cr *cursorRead, limit int, discard bool) (int, error) {
	if !discard && !h.formatsMatch() {
		return 0, &plan.Unsupported{
			Message: "a WITH HOLD cursor over several shards returns its rows in the format of its DECLARE (text, or binary for DECLARE … BINARY)",
			Hint:    "fetch in that format, or declare the cursor BINARY to fetch binary rows",
		}
	}
	ss := cr.ss
	var head [5]byte
	n := 0
	for !cr.done && (limit <= 0 || n < limit) {
		if _, err := io.ReadFull(h.r, head[:]); err != nil {
			if err == io.EOF {
				cr.done = true
				break
			}
			cr.failed = fmt.Errorf("WITH HOLD cursor: %w", err)
			return n, cr.failed
		}
		size := int(uint32(head[1])<<24|uint32(head[2])<<16|uint32(head[3])<<8|uint32(head[4])) - 4
		n++
		if discard {
			if _, err := h.r.Discard(size); err != nil {
				cr.failed = fmt.Errorf("WITH HOLD cursor: %w", err)
				return n, cr.failed
			}
			continue
		}
		at := len(ss.out)
		ss.out = append(ss.out, head[:]...)
		ss.out = append(ss.out, make([]byte, size)...)
		if _, err := io.ReadFull(h.r, ss.out[at+5:]); err != nil {
			ss.out = ss.out[:at]
			cr.failed = fmt.Errorf("WITH HOLD cursor: %w", err)
			return n, cr.failed
		}
		if len(ss.out) > 64<<10 {
			cr.flushed = true
			if err := ss.flushClient(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// formatsMatch reports whether the formats the FETCH asks for (none: the
// cursor's own) are those the rows are stored in.
func (h *heldRows) formatsMatch() bool {
	if len(h.want) == 0 {
		return true
	}
	rd := h.rowDescription()
	for i, f := range rd.Fields {
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

// closeHeldCursors drops the WITH HOLD cursors: all of them (the session
// ends, DISCARD ALL), or those the transaction now rolled back declared.
func (ss *session) closeHeldCursors(rolledBackOnly bool) {
	for name, cr := range ss.multiCursor {
		if cr.spool != nil && (!rolledBackOnly || cr.spool.inTx) {
			cr.spool.close()
			delete(ss.multiCursor, name)
		}
	}
}
