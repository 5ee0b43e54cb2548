package wal

import (
	"errors"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// eventually polls cond until it holds, with a generous deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDiskFull: with no space for the next segment, SpaceErr reports it
// while the active segment still has room, writes that need the space wait
// (not fail), and everything completes once space is back.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	o := rotOpts(dir)
	var full atomic.Bool
	o.allocHook = func(int64) error {
		if full.Load() {
			return syscall.ENOSPC
		}
		return nil
	}
	s := openT(t, o)
	full.Store(true)
	m := node.NewMemoryStorage()
	var i uint64
	save := func() chan error {
		i++
		u := &node.Update{Entries: storagetest.NamedEntries(i, i, 1), HardState: core.HardState{Term: 1, Commit: i}}
		m.Save(u, func(error) {})
		ch := make(chan error, 1)
		s.Save(u, func(err error) { ch <- err })
		return ch
	}
	// Save until SpaceErr reports the failed preallocation. On a loaded
	// machine the preallocator may report it only after the active segment
	// filled up: a Save that waits then is one of the pending ones.
	var pending []chan error
	for s.SpaceErr() == nil {
		ch := save()
	wait:
		for {
			select {
			case err := <-ch:
				if err != nil {
					t.Fatalf("Save %d: %v", i, err)
				}
				break wait
			case <-time.After(10 * time.Millisecond):
				if s.SpaceErr() != nil {
					pending = append(pending, ch)
					break wait
				}
			}
		}
		if s.Stats().Rotations > 0 {
			t.Fatal("rotated although no segment could be created")
		}
	}
	if err := s.SpaceErr(); !errors.Is(err, syscall.ENOSPC) || !contains(err, dir) {
		t.Fatalf("SpaceErr %v", err)
	}
	// Fill the active segment: some Save must wait.
	for len(pending) == 0 {
		ch := save()
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("Save %d: %v", i, err)
			}
		case <-time.After(200 * time.Millisecond):
			pending = append(pending, ch)
		}
	}
	pending = append(pending, save(), save())
	if s.Stats().Rotations != 0 || s.SpaceErr() == nil {
		t.Fatalf("rotated (%d) or SpaceErr cleared (%v) while the disk is full", s.Stats().Rotations, s.SpaceErr())
	}
	full.Store(false)
	for _, ch := range pending {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("waiting Save failed: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("Save still waiting after space came back")
		}
	}
	eventually(t, "SpaceErr clears", func() bool { return s.SpaceErr() == nil })
	storagetest.MustClose(t, s)
	if d := storagetest.DiffPersisted(reopenLoad(t, rotOpts(dir)), m.Persisted()); d != "" {
		t.Fatal(d)
	}
}

// TestIOErrorFailStop: an I/O error other than ENOSPC fails the write that
// needs it and every later one.
func TestIOErrorFailStop(t *testing.T) {
	o := rotOpts(t.TempDir())
	var broken atomic.Bool
	o.allocHook = func(int64) error {
		if broken.Load() {
			return syscall.EIO
		}
		return nil
	}
	s := openT(t, o)
	defer s.Close()
	broken.Store(true)
	var err error
	for i := uint64(1); err == nil; i++ {
		err = storagetest.SaveWait(t, s, &node.Update{Entries: storagetest.NamedEntries(i, i, 1)})
		if i > 10000 {
			t.Fatal("no failure")
		}
	}
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("error %v", err)
	}
	broken.Store(false)
	if err := storagetest.SaveWait(t, s, &node.Update{HardState: core.HardState{Term: 1}}); err == nil {
		t.Fatal("a write after a failed one succeeded")
	}
}
