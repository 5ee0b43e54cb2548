package linearizability

import (
	"testing"
)

// decodeHistory turns fuzz bytes into a small history, 4 bytes an operation.
func decodeHistory(data []byte) History {
	values := []string{"a", "b", "c", ""}
	var h History
	for i := 0; i+4 <= len(data) && len(h.Ops) < 8; i += 4 {
		b0, b1, b2, b3 := data[i], data[i+1], data[i+2], data[i+3]
		op := Op{ID: len(h.Ops), Client: int(b0>>6) % 3}
		op.Input = Input{
			Kind:     Kind(1 + b0&3),
			Key:      []string{"x", "y"}[b0>>2&1],
			Value:    values[b0>>3&3],
			Expected: values[b3>>4&3],
		}
		op.Call = int64(b1 & 31)
		op.Return = op.Call + int64(b2&15)
		op.Open = b0>>5&1 == 1 && b2&16 != 0
		if op.Open {
			op.Return = 0
		} else {
			op.Output = Output{Found: b3&1 != 0, OK: b3&2 != 0, Value: values[b3>>2&3]}
		}
		h.Ops = append(h.Ops, op)
	}
	return h
}

// FuzzCheck compares Check, with and without prune's reductions, with the
// exhaustive reference.
func FuzzCheck(f *testing.F) {
	f.Add([]byte{0x09, 0, 2, 0, 0x00, 5, 1, 0x01})                    // put a; get → a
	f.Add([]byte{0x09, 0, 2, 0, 0x31, 1, 0x10, 0, 0x00, 20, 1, 0x09}) // put a; open put b; get → b
	f.Add([]byte{0x0b, 0, 2, 0, 0x03, 5, 1, 0x03, 0x13, 8, 1, 0x02})  // cas chain
	f.Fuzz(func(t *testing.T, data []byte) {
		h := decodeHistory(data)
		want := Illegal
		if refLinearizable(h) {
			want = Ok
		}
		if r := Check(h, 0); r.Verdict != want {
			t.Fatalf("Check: %v, reference %v\n%s", r.Verdict, want, dump(h))
		}
		if r := check(h, 0, false); r.Verdict != want {
			t.Fatalf("unreduced check: %v, reference %v\n%s", r.Verdict, want, dump(h))
		}
	})
}
