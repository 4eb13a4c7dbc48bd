package tunnel

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// streamTable follows the streams of a session by yamux stream ID, from the
// frames on the wire, for two things yamux v0.1.2 does not offer:
//   - telling a stream the peer closed (FIN) or reset (RST) from one cut by
//     the end of its session: yamux reports both as io.EOF;
//   - waking the reads and writes blocked on a session that is closing:
//     yamux lets them spin until the session has finished closing, which on
//     a small machine with many streams starves the close itself.
type streamTable struct {
	m sync.Map // uint32 → *streamEntry
}

// streamEntry is one stream. Its state only ever gains bits.
type streamEntry struct {
	st    atomic.Pointer[yamux.Stream]
	state atomic.Int32
}

const (
	entryClosed    = 1 << iota // this side closed the stream
	entryPeerEnded             // the peer closed or reset it
)

func (t *streamTable) entry(id uint32) *streamEntry {
	if v, ok := t.m.Load(id); ok {
		return v.(*streamEntry)
	}
	v, _ := t.m.LoadOrStore(id, new(streamEntry))
	return v.(*streamEntry)
}

// opened records a stream the peer opens (its SYN), before yamux sees it.
func (t *streamTable) opened(id uint32) { t.entry(id) }

// attach records st, opened on this side or accepted, and returns its entry.
func (t *streamTable) attach(st *yamux.Stream) *streamEntry {
	e := t.entry(st.StreamID())
	e.st.Store(st)
	return e
}

// peerEnded records the peer's FIN or RST for stream id.
func (t *streamTable) peerEnded(id uint32) {
	if v, ok := t.m.Load(id); ok {
		t.mark(id, v.(*streamEntry), entryPeerEnded)
	}
}

// closed records that this side closed the stream of e.
func (t *streamTable) closed(id uint32, e *streamEntry) { t.mark(id, e, entryClosed) }

// mark adds bit to e's state; a stream closed on both sides leaves the
// table (its connection keeps e to answer later reads).
func (t *streamTable) mark(id uint32, e *streamEntry, bit int32) {
	if e.state.Or(bit)|bit == entryClosed|entryPeerEnded {
		t.m.CompareAndDelete(id, e)
	}
}

// reset drops stream id, which this side reset.
func (t *streamTable) reset(id uint32) { t.m.Delete(id) }

// wakeAll makes every blocked read and write of the table's streams return.
func (t *streamTable) wakeAll() {
	past := time.Unix(1, 0)
	t.m.Range(func(_, v any) bool {
		if st := v.(*streamEntry).st.Load(); st != nil {
			_ = st.SetDeadline(past)
		}
		return true
	})
}

// len returns the number of streams followed.
func (t *streamTable) len() int {
	n := 0
	t.m.Range(func(any, any) bool { n++; return true })
	return n
}
