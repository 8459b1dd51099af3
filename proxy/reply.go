package proxy

import "strings"

// internalReply handles the messages of a shard's reply that every
// exchange the proxy runs on a client's behalf treats alike (everything
// but rows, row descriptions and command tags): the first ErrorResponse is
// kept in *first with where ("on shard s", and what the proxy was doing)
// added to its detail, a FATAL one ends the exchange as errServerGone,
// notices and notifications go to the client, ParameterStatus is noted,
// and ReadyForQuery records the server's transaction status and ends the
// reply (done).
func (ss *session) internalReply(typ byte, body []byte, where string, first *error) (done bool, err error) {
	switch typ {
	case msgErrorResponse:
		if isFatal(body) {
			return true, &errServerGone{&sqlError{decodeError(body)}}
		}
		if *first == nil {
			f := decodeError(body)
			f.Detail = strings.TrimSpace(f.Detail + "\n(" + where + ")")
			*first = &sqlError{f}
		}
	case msgNoticeResponse, msgNotification:
		ss.out = appendMsg(ss.out, typ, body)
	case msgParamStatus:
		ss.noteParamStatus(body)
	case msgReadyForQuery:
		if len(body) == 1 {
			ss.noteServerStatus(body[0])
		}
		return true, nil
	}
	return false, nil
}
