package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Message type bytes of the PostgreSQL protocol 3.0 that the proxy inspects.
// Everything else is relayed as raw bytes.
const (
	// frontend → backend
	msgBind      = 'B'
	msgClose     = 'C'
	msgCopyData  = 'd'
	msgCopyDone  = 'c'
	msgCopyFail  = 'f'
	msgDescribe  = 'D'
	msgExecute   = 'E'
	msgFlush     = 'H'
	msgFuncCall  = 'F'
	msgParse     = 'P'
	msgQuery     = 'Q'
	msgSync      = 'S'
	msgTerminate = 'X'

	// backend → frontend
	msgParseComplete   = '1'
	msgBindComplete    = '2'
	msgCloseComplete   = '3'
	msgNotification    = 'A'
	msgCommandComplete = 'C'
	msgCopyInResponse  = 'G'
	msgCopyOutResponse = 'H'
	msgCopyBothResp    = 'W'
	msgDataRow         = 'D'
	msgEmptyQuery      = 'I'
	msgErrorResponse   = 'E'
	msgFuncCallResp    = 'V'
	msgNoData          = 'n'
	msgNoticeResponse  = 'N'
	msgParamDesc       = 't'
	msgParamStatus     = 'S'
	msgPortalSuspended = 's'
	msgReadyForQuery   = 'Z'
	msgRowDescription  = 'T'
)

// errBadLength is returned by msgReader for a length that is negative, too
// small or above the configured maximum.
type errBadLength struct{ n int64 }

func (e *errBadLength) Error() string { return fmt.Sprintf("invalid message length %d", e.n) }

// msgReader reads whole protocol messages from a buffered connection without
// decoding them. The body returned by next is valid only until the next call
// on the reader (it usually aliases the bufio buffer).
//
// A msgReader is owned by one goroutine at a time.
type msgReader struct {
	br     *bufio.Reader
	maxLen int    // maximum body length
	big    []byte // body buffer for messages larger than the bufio buffer
}

// next returns the type byte and body of the next message.
func (r *msgReader) next() (byte, []byte, error) {
	hdr, err := r.br.Peek(5)
	if err != nil {
		if len(hdr) > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	typ := hdr[0]
	n := int64(int32(binary.BigEndian.Uint32(hdr[1:])))
	if n < 4 || n-4 > int64(r.maxLen) {
		return typ, nil, &errBadLength{n}
	}
	r.br.Discard(5)
	bodyLen := int(n - 4)
	if bodyLen <= r.br.Size() {
		body, err := r.br.Peek(bodyLen)
		if err != nil {
			return 0, nil, unexpectedEOF(err)
		}
		r.br.Discard(bodyLen)
		return typ, body, nil
	}
	if cap(r.big) < bodyLen {
		r.big = make([]byte, bodyLen)
	}
	body := r.big[:bodyLen]
	if _, err := io.ReadFull(r.br, body); err != nil {
		return 0, nil, unexpectedEOF(err)
	}
	if bodyLen > 1<<20 {
		r.big = nil // don't keep huge buffers around
	}
	return typ, body, nil
}

// buffered reports how many bytes are already read from the connection but
// not yet returned as messages.
func (r *msgReader) buffered() int { return r.br.Buffered() }

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendMsg appends one message with the given type and body.
func appendMsg(dst []byte, typ byte, body []byte) []byte {
	dst = append(dst, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(len(body)+4))
	return append(dst, body...)
}

// appendEmpty appends a message without body (ParseComplete, Sync, …).
func appendEmpty(dst []byte, typ byte) []byte {
	return append(dst, typ, 0, 0, 0, 4)
}

// appendRFQ appends ReadyForQuery with the transaction status.
func appendRFQ(dst []byte, status byte) []byte {
	return append(dst, msgReadyForQuery, 0, 0, 0, 5, status)
}

// appendCommandComplete appends CommandComplete with tag.
func appendCommandComplete(dst []byte, tag string) []byte {
	dst = append(dst, msgCommandComplete, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(len(tag)+5))
	dst = append(dst, tag...)
	return append(dst, 0)
}

// appendParameterStatus appends ParameterStatus name=value.
func appendParameterStatus(dst []byte, name, value string) []byte {
	dst = append(dst, msgParamStatus, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(len(name)+len(value)+6))
	dst = append(dst, name...)
	dst = append(dst, 0)
	dst = append(dst, value...)
	return append(dst, 0)
}

// appendQuery appends a simple Query message.
func appendQuery(dst []byte, sql string) []byte {
	dst = append(dst, msgQuery, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(len(sql)+5))
	dst = append(dst, sql...)
	return append(dst, 0)
}

// appendCloseStmt appends Close('S', name).
func appendCloseStmt(dst []byte, name string) []byte {
	return appendClose(dst, 'S', name)
}

// appendClose appends Close of the statement ('S') or portal ('P') name.
func appendClose(dst []byte, kind byte, name string) []byte {
	dst = append(dst, msgClose, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(len(name)+6))
	dst = append(dst, kind)
	dst = append(dst, name...)
	return append(dst, 0)
}

// appendEncoded appends a pgproto3 message (used for rare messages only).
func appendEncoded(dst []byte, msg pgproto3.BackendMessage) []byte {
	out, err := msg.Encode(dst)
	if err != nil {
		return dst
	}
	return out
}

// cstring splits a NUL-terminated string off the front of b.
func cstring(b []byte) (s []byte, rest []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return nil, nil, false
}

// parseMsg is the decoded form of a client Parse body. Query aliases the body.
type parseMsg struct {
	name  []byte
	query []byte
	oids  []byte // raw parameter count and OIDs (everything after the query)
}

func decodeParse(body []byte) (parseMsg, bool) {
	name, rest, ok := cstring(body)
	if !ok {
		return parseMsg{}, false
	}
	q, rest, ok := cstring(rest)
	if !ok || len(rest) < 2 {
		return parseMsg{}, false
	}
	n := int(binary.BigEndian.Uint16(rest))
	if len(rest) != 2+4*n {
		return parseMsg{}, false
	}
	return parseMsg{name: name, query: q, oids: rest}, true
}

// buildParseBody builds a Parse body for name, query and raw OID block.
func buildParseBody(name string, query, oids []byte) []byte {
	b := make([]byte, 0, len(name)+len(query)+len(oids)+2)
	b = append(b, name...)
	b = append(b, 0)
	b = append(b, query...)
	b = append(b, 0)
	return append(b, oids...)
}

// errorFields are the parts of an ErrorResponse the proxy itself produces.
type errorFields struct {
	Severity string // ERROR or FATAL
	Code     string
	Message  string
	Detail   string
	Hint     string
	Position int // 1-based character position in the query, 0 = none
}

func appendError(dst []byte, e errorFields) []byte {
	if e.Severity == "" {
		e.Severity = "ERROR"
	}
	return appendEncoded(dst, &pgproto3.ErrorResponse{
		Severity:            e.Severity,
		SeverityUnlocalized: e.Severity,
		Code:                e.Code,
		Message:             e.Message,
		Detail:              e.Detail,
		Hint:                e.Hint,
		Position:            int32(e.Position),
	})
}

// errorCode extracts the SQLSTATE of an ErrorResponse body without a full decode.
func errorCode(body []byte) string {
	for len(body) > 0 && body[0] != 0 {
		k := body[0]
		v, rest, ok := cstring(body[1:])
		if !ok {
			return ""
		}
		if k == 'C' {
			return string(v)
		}
		body = rest
	}
	return ""
}

// isFatal reports whether an ErrorResponse body has severity FATAL or PANIC
// (the server closes the connection after it).
func isFatal(body []byte) bool {
	for len(body) > 0 && body[0] != 0 {
		k := body[0]
		v, rest, ok := cstring(body[1:])
		if !ok {
			return false
		}
		if k == 'V' || k == 'S' {
			return string(v) == "FATAL" || string(v) == "PANIC"
		}
		body = rest
	}
	return false
}

// appendWarning appends a WARNING NoticeResponse with SQLSTATE code.
func appendWarning(dst []byte, code, msg string) []byte {
	return appendEncoded(dst, &pgproto3.NoticeResponse{Severity: "WARNING", SeverityUnlocalized: "WARNING", Code: code, Message: msg})
}

// appendNotice appends a NoticeResponse (severity NOTICE, SQLSTATE 00000).
func appendNotice(dst []byte, msg string) []byte {
	return appendEncoded(dst, &pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: msg})
}

// decodeError turns an ErrorResponse body into errorFields.
func decodeError(body []byte) errorFields {
	var er pgproto3.ErrorResponse
	er.Decode(body)
	return errorFields{Severity: er.Severity, Code: er.Code, Message: er.Message, Detail: er.Detail, Hint: er.Hint, Position: int(er.Position)}
}

// appendFrontend appends a frontend message (towards a server).
func appendFrontend(dst []byte, msg pgproto3.FrontendMessage) []byte {
	out, err := msg.Encode(dst)
	if err != nil {
		panic("proxy: encoding " + fmt.Sprintf("%T", msg) + ": " + err.Error())
	}
	return out
}

// eachMessage calls fn for every complete message in buf (type byte,
// length, body) and reports a truncated or malformed one.
func eachMessage(buf []byte, fn func(typ byte, body []byte)) error {
	for len(buf) >= 5 {
		typ := buf[0]
		n := int(binary.BigEndian.Uint32(buf[1:5]))
		if n < 4 || 1+n > len(buf) {
			return fmt.Errorf("truncated message 0x%02X", typ)
		}
		fn(typ, buf[5:1+n])
		buf = buf[1+n:]
	}
	return nil
}
