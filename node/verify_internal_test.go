package node

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/forge-consensus/consensus/core"
)

func TestDecideMajority(t *testing.T) {
	voters := []uint64{1, 2, 3}
	tests := []struct {
		name     string
		reports  []report
		voters   []uint64
		outgoing []uint64
		final    bool
		ok       bool
		decided  bool
		hash     uint64
	}{
		{"none", nil, voters, nil, true, false, false, 0},
		{"one of three agrees with nobody yet", []report{{1, 7}}, voters, nil, false, false, false, 0},
		{"two of three agree", []report{{1, 7}, {2, 7}}, voters, nil, false, true, true, 7},
		{"minority follower differs", []report{{1, 7}, {3, 9}, {2, 7}}, voters, nil, false, true, true, 7},
		// The leader (1) is the one that diverged: the followers' hash wins.
		{"leader differs", []report{{1, 9}, {2, 7}, {3, 7}}, voters, nil, false, true, true, 7},
		{"two disagree, one missing", []report{{1, 7}, {2, 9}}, voters, nil, false, false, false, 0},
		{"two disagree, one missing, final", []report{{1, 7}, {2, 9}}, voters, nil, true, true, false, 0},
		{"three disagree", []report{{1, 7}, {2, 9}, {3, 11}}, voters, nil, false, true, false, 0},
		{"all agree but no majority yet, final", []report{{1, 7}}, voters, nil, true, false, false, 0},
		// A learner's report does not count toward the majority.
		{"learner does not count", []report{{1, 7}, {4, 7}}, voters, nil, false, false, false, 0},
		{"learner differs", []report{{1, 7}, {4, 9}, {2, 7}}, voters, nil, false, true, true, 7},
		// Joint configuration: a majority of both halves.
		{"joint: incoming only", []report{{3, 7}, {4, 7}}, []uint64{3, 4, 5}, []uint64{1, 2, 3}, false, false, false, 0},
		{"joint: both halves", []report{{3, 7}, {4, 7}, {1, 7}}, []uint64{3, 4, 5}, []uint64{1, 2, 3}, false, true, true, 7},
		{"two-two split of four", []report{{1, 7}, {2, 7}, {3, 9}, {4, 9}}, []uint64{1, 2, 3, 4}, nil, false, true, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, ok := decide(100, tc.reports, tc.voters, tc.outgoing, tc.final)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v (verdict %+v)", ok, tc.ok, v)
			}
			if !ok {
				return
			}
			if v.decided != tc.decided || v.hash != tc.hash || v.index != 100 {
				t.Fatalf("verdict %+v, want decided %v hash %d at 100", v, tc.decided, tc.hash)
			}
			if len(v.reports) != len(tc.reports) {
				t.Fatalf("verdict counts %d reports, want %d", len(v.reports), len(tc.reports))
			}
			for i := 1; i < len(v.reports); i++ {
				if v.reports[i-1].node >= v.reports[i].node {
					t.Fatalf("reports not sorted: %+v", v.reports)
				}
			}
		})
	}
}

func TestRecordRoundTrip(t *testing.T) {
	b := encodeReport(3, 10000, 0xdeadbeefcafe)
	if !isRecord(b) {
		t.Fatal("a report is not recognised as a record")
	}
	rec, err := decodeRecord(b)
	if err != nil || rec.kind != recReport || rec.rep != (report{3, 0xdeadbeefcafe}) || rec.index != 10000 {
		t.Fatalf("report decoded as %+v, %v", rec, err)
	}
	v := verdict{index: 20000, decided: true, hash: 42, reports: []report{{1, 42}, {2, 42}, {5, 43}}}
	rec, err = decodeRecord(encodeVerdict(&v))
	if err != nil || rec.kind != recVerdict || !reflect.DeepEqual(rec.verdict, v) {
		t.Fatalf("verdict decoded as %+v, %v", rec, err)
	}
	u := verdict{index: 7, reports: []report{{1, 1}, {2, 2}}}
	rec, err = decodeRecord(encodeVerdict(&u))
	if err != nil || !reflect.DeepEqual(rec.verdict, u) {
		t.Fatalf("undecided verdict decoded as %+v, %v", rec, err)
	}
}

func TestRecordRejects(t *testing.T) {
	good := encodeVerdict(&verdict{index: 9, decided: true, hash: 1, reports: []report{{1, 1}, {2, 1}}})
	bad := map[string][]byte{
		"not a record":    {0, 1, 'F', 'C', 'V', 1},
		"unknown kind":    append(recordHeader(9), 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
		"truncated":       good[:len(good)-1],
		"trailing":        append(bytes.Clone(good), 0),
		"zero reporter":   encodeReport(0, 5, 1),
		"zero index":      encodeReport(1, 0, 1),
		"unsorted":        encodeVerdict(&verdict{index: 9, decided: true, hash: 1, reports: []report{{2, 1}, {1, 1}}}),
		"duplicate":       encodeVerdict(&verdict{index: 9, decided: true, hash: 1, reports: []report{{1, 1}, {1, 1}}}),
		"undecided hash":  encodeVerdict(&verdict{index: 9, hash: 1}),
		"overlong varint": append(recordHeader(recReport), 0x81, 0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0),
		"huge count":      append(append(recordHeader(recVerdict), 9, 1, 1, 0, 0, 0, 0, 0, 0, 0), 0xff, 0xff, 0xff, 0xff, 0x0f),
	}
	for name, b := range bad {
		if _, err := decodeRecord(b); !errors.Is(err, errBadRecord) {
			t.Errorf("%s: decodeRecord = %v, want errBadRecord", name, err)
		}
	}
}

// FuzzDecodeRecord: the record decoder never panics, and what it accepts
// re-encodes to the same bytes (one encoding per record).
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeReport(1, 100, 5))
	f.Add(encodeVerdict(&verdict{index: 100, decided: true, hash: 5, reports: []report{{1, 5}, {2, 6}}}))
	f.Add(encodeVerdict(&verdict{index: 100, reports: []report{{1, 5}, {2, 6}}}))
	f.Add([]byte{0, 0, 'F', 'C', 'V'})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRecord(b)
		if err != nil {
			if !errors.Is(err, errBadRecord) {
				t.Fatalf("error %v does not wrap errBadRecord", err)
			}
			return
		}
		var again []byte
		switch rec.kind {
		case recReport:
			again = encodeReport(rec.rep.node, rec.index, rec.rep.hash)
		case recVerdict:
			again = encodeVerdict(&rec.verdict)
		default:
			t.Fatalf("accepted kind %d", rec.kind)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted %x, re-encodes as %x", b, again)
		}
	})
}

type nopTransport struct{}

func (nopTransport) Send([]core.Message) {}

type nopSM struct{}

func (nopSM) Apply(uint64, []byte) any  { return nil }
func (nopSM) Query([]byte) (any, error) { return nil, nil }
func (nopSM) Snapshot() ([]byte, error) { return nil, nil }
func (nopSM) Restore([]byte) error      { return nil }

// A proposal's header never looks like a record's: a seed that derives
// incarnation 0 still gives a nonzero one, and New refuses verification
// without a Hasher.
func TestIncarnationNeverZero(t *testing.T) {
	const id = 1
	cfg := Config{
		Core:    core.Config{ID: id, Voters: []uint64{1}, ElectionTick: 10, HeartbeatTick: 1, Seed: 0x9e3779b97f4a7c15 * id},
		Storage: NewMemoryStorage(), Transport: nopTransport{}, StateMachine: nopSM{},
	}
	if mix64(cfg.Core.Seed^0x9e3779b97f4a7c15*id) != 0 {
		t.Fatal("the seed does not derive incarnation 0; the test needs another")
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n.inc == 0 {
		t.Fatal("incarnation 0, which marks verification records")
	}
	cfg.Storage, cfg.VerifyInterval = NewMemoryStorage(), 10
	if _, err := New(cfg); !errors.Is(err, core.ErrInvalidConfig) {
		t.Fatalf("VerifyInterval without a Hasher: %v, want ErrInvalidConfig", err)
	}
}

// TestRetryBackoff: a verification record not yet seen in the log is
// proposed again after one retry period, then after periods doubling up to
// 16, never at a fixed rate.
func TestRetryBackoff(t *testing.T) {
	for _, tc := range []struct {
		tries uint32
		want  uint64
	}{{0, 10}, {1, 10}, {2, 20}, {3, 40}, {4, 80}, {5, 160}, {6, 160}, {100, 160}} {
		if got := retryBackoff(10, tc.tries); got != tc.want {
			t.Errorf("retryBackoff(10, %d) = %d, want %d", tc.tries, got, tc.want)
		}
	}
}
