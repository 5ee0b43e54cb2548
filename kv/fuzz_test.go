package kv

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range sampleCommands() {
		if len(c.Value)+len(c.Expected) < 1000 {
			f.Add(EncodeCommand(c))
		}
	}
	f.Add([]byte{})
	f.Add([]byte{1, 9, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 1, 0x80, 0x00, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := append([]byte(nil), b...)
		c, err := DecodeCommand(b)
		if !bytes.Equal(b, in) {
			t.Fatal("DecodeCommand modified its input")
		}
		s := New(Config{})
		mustApply(t, s, 1, cmdSet("k", "v", 0, 0))
		r := mustApply(t, s, 2, b)
		if err != nil {
			if !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("error %v does not wrap ErrInvalidCommand", err)
			}
			if r.Status != StatusBadCommand {
				t.Fatalf("Apply of an undecodable command = %+v", r)
			}
			return
		}
		if r.Status != StatusOK {
			t.Fatalf("Apply of a decodable command = %+v", r)
		}
		// The encoding is canonical: a decoded command re-encodes to the
		// same bytes, and it is valid.
		enc, encErr := c.AppendBinary(nil)
		if encErr != nil {
			t.Fatalf("decoded command is invalid: %v", encErr)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding differs:\n in % x\nout % x", b, enc)
		}
		checkInvariants(t, s)
		if _, qerr := s.Query(b); (qerr == nil) != (c.Op == OpGet) {
			t.Fatalf("Query of %v: %v", c.Op, qerr)
		}
	})
}

func FuzzDecodeResult(f *testing.F) {
	for _, r := range sampleResults() {
		if len(r.Value) < 1000 {
			f.Add(EncodeResult(r))
		}
	}
	f.Add([]byte{})
	f.Add([]byte{1, 3, 0, 0})
	f.Add([]byte{1, 0, 0xff, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeResult(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidResult) {
				t.Fatalf("error %v does not wrap ErrInvalidResult", err)
			}
			return
		}
		enc, encErr := r.AppendBinary(nil)
		if encErr != nil {
			t.Fatalf("decoded result is invalid: %v", encErr)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding differs:\n in % x\nout % x", b, enc)
		}
	})
}

func FuzzRestore(f *testing.F) {
	f.Add(mustSnapshot(f, buildWithSessions(f)))
	f.Add(mustSnapshot(f, New(Config{})))
	small := New(Config{})
	mustApply(f, small, 1, cmdSet("a", "1", 1, 1))
	mustApply(f, small, 2, cmdCAS("a", "0", "2", 2, 1))
	f.Add(mustSnapshot(f, small))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0})
	f.Add([]byte{1, 3, 1, 1, 'k', 1, 'v', 1, 1, 1, 1, 0, 2, 0})
	f.Add([]byte{1, 9, 2, 0, 0, 1, 'a', 0, 3, 5, 1, 2, 0, 0, 0, 6, 2, 3, 0, 3, 1, 'z', 7, 1, 4, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		// Random bytes rarely carry a valid checksum: also try b as the body
		// of a snapshot, sealed with its checksum, to reach the parser.
		for _, share := range []bool{false, true} {
			checkRestore(t, b, share)
			checkRestore(t, sealed(append([]byte(nil), b...)), share)
		}
	})
}

// checkRestore restores b into a non-empty store: on error the store must be
// unchanged; on success b must be canonical and the store consistent. With
// share the store keeps references into b, which must then stay unchanged
// by what the store does next.
func checkRestore(t *testing.T, b []byte, share bool) {
	orig := append([]byte(nil), b...)
	defer func() {
		if !bytes.Equal(b, orig) {
			t.Fatal("the store modified the bytes it was restored from")
		}
	}()
	s := New(Config{MaxSessions: 3, ShareSnapshots: share})
	s.chunkSize = 8 // a record or two per chunk
	mustApply(t, s, 1, cmdSet("mine", "v", 7, 1))
	before := mustSnapshot(t, s)
	hash := s.Hash()
	if err := s.Restore(b); err != nil {
		if !errors.Is(err, ErrInvalidSnapshot) {
			t.Fatalf("error %v does not wrap ErrInvalidSnapshot", err)
		}
		if s.Hash() != hash || !bytes.Equal(mustSnapshot(t, s), before) {
			t.Fatal("a failed Restore changed the store")
		}
		return
	}
	checkInvariants(t, s)
	// Streamed, or not, the snapshot is the bytes restored.
	var w bytes.Buffer
	if err := s.WriteSnapshot(&w); err != nil || !bytes.Equal(w.Bytes(), b) {
		t.Fatalf("WriteSnapshot after Restore (error %v) differs from the restored bytes", err)
	}
	if !bytes.Equal(mustSnapshot(t, s), b) {
		t.Fatal("Snapshot after Restore differs from the restored bytes")
	}
	// The restored store keeps working, evicting down to its bound.
	mustApply(t, s, s.Applied()+1, cmdSet("x", "y", 1<<40, 1))
	checkInvariants(t, s)
	if s.Sessions() > 3 {
		t.Fatalf("%d sessions after a new client, bound 3", s.Sessions())
	}
	// A WriteSnapshot that fails half way changes nothing; then one that
	// succeeds writes the same bytes as a plain store that went through
	// the same commands.
	var snap bytes.Buffer
	if err := s.WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	ref := New(Config{MaxSessions: 3})
	if err := ref.Restore(snap.Bytes()); err != nil {
		t.Fatal(err)
	}
	for _, st := range []*Store{s, ref} {
		mustApply(t, st, st.Applied()+1, cmdDel("x", 0, 0))
		mustApply(t, st, st.Applied()+1, cmdSet("z", "y", 0, 0))
	}
	want := mustSnapshot(t, ref)
	if err := s.WriteSnapshot(&failingWriter{limit: len(want) / 2}); !errors.Is(err, errDiskFull) {
		t.Fatalf("WriteSnapshot into a failing writer: %v", err)
	}
	checkInvariants(t, s)
	if s.Hash() != ref.Hash() {
		t.Fatal("a failed WriteSnapshot changed the hash")
	}
	w.Reset()
	if err := s.WriteSnapshot(&w); err != nil || !bytes.Equal(w.Bytes(), want) {
		t.Fatalf("after a failed WriteSnapshot the state differs (%v)", err)
	}
}

// FuzzWriteSnapshot drives a store that shares its snapshots and a plain
// one with commands read from ops (two bytes each: op, argument) over 16
// keys, with chunks of 1 to 256 bytes: among the commands, streamed
// snapshots, which must be the plain store's, and streams that fail after
// a number of bytes derived from fail, which must change nothing.
func FuzzWriteSnapshot(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 5, 0, 2, 1, 4, 3, 6, 0, 0, 0x31, 5, 0}, uint16(7), uint8(3))
	f.Add([]byte{0, 0xf1, 0, 0x72, 0, 0x33, 5, 0, 2, 2, 3, 1, 6, 0, 7, 0, 4, 5, 6, 1, 5, 0}, uint16(40), uint8(0))
	f.Add([]byte{1, 1, 1, 2, 1, 3, 1, 4, 1, 5, 5, 5, 2, 3, 4, 3, 6, 6, 6, 6, 7, 7}, uint16(1000), uint8(20))
	f.Fuzz(func(t *testing.T, ops []byte, fail uint16, chunk uint8) {
		tw := newTwin(t, 16, 1+int(chunk), 4)
		for ; len(ops) >= 2; ops = ops[2:] {
			op, arg := ops[0], ops[1]
			k := key(int(arg % 16))
			v := []byte(strings.Repeat("v", int(arg/16)))
			switch op % 8 {
			case 0, 1:
				tw.apply(Command{Op: OpSet, Key: k, Value: v})
			case 2:
				tw.apply(Command{Op: OpDelete, Key: k})
			case 3:
				cur, _ := tw.plain.Get(k)
				tw.apply(Command{Op: OpCAS, Key: k, Expected: cur, Value: v})
			case 4:
				id := uint64(arg%5 + 1)
				tw.seqs[id]++
				tw.apply(Command{Op: OpSet, Key: k, Value: v, ClientID: id, Seq: tw.seqs[id]})
			case 5:
				tw.writeShared()
			case 6:
				want := tw.want()
				tw.failWrite(int(fail)%(len(want)+1), want)
				fail = fail*31 + 7
			case 7:
				if !bytes.Equal(mustSnapshot(t, tw.shared), tw.want()) {
					t.Fatal("Snapshot differs")
				}
			}
		}
		tw.check()
		tw.writeShared()
	})
}
