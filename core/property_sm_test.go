package core

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The property test's state machine is the list of every entry applied,
// from index 1 on. A snapshot's Data is that list, encoded, so that a node
// restored from a snapshot can be checked entry by entry.

// encodePropSM encodes the entries applied at indexes 1..len(sm).
func encodePropSM(sm []Entry) []byte {
	var b []byte
	for i := range sm {
		e := &sm[i]
		b = binary.AppendUvarint(b, e.Term)
		b = append(b, byte(e.Type))
		b = binary.AppendUvarint(b, uint64(len(e.Data)))
		b = append(b, e.Data...)
	}
	return b
}

// decodePropSM decodes what encodePropSM encoded.
func decodePropSM(b []byte) ([]Entry, error) {
	var sm []Entry
	for len(b) > 0 {
		term, n := binary.Uvarint(b)
		if n <= 0 || len(b) < n+1 {
			return nil, errors.New("state machine: bad term")
		}
		typ := EntryType(b[n])
		b = b[n+1:]
		size, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < size {
			return nil, errors.New("state machine: bad data")
		}
		data := b[n : n+int(size) : n+int(size)]
		if size == 0 {
			data = nil
		}
		b = b[n+int(size):]
		sm = append(sm, Entry{Term: term, Index: uint64(len(sm)) + 1, Type: typ, Data: data})
	}
	for i := 1; i < len(sm); i++ {
		if sm[i].Term < sm[i-1].Term {
			return nil, fmt.Errorf("state machine: term %d at %d after term %d", sm[i].Term, i+1, sm[i-1].Term)
		}
	}
	return sm, nil
}
