package storagetest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// Environment of the corruption campaign.
const (
	// EnvFlips sets the number of flips of the campaign (default
	// DefaultFlips).
	EnvFlips = "STORAGE_FLIPS"
	// EnvFlipsSeed sets the seed that places the flips (default 1).
	EnvFlipsSeed = "STORAGE_FLIPS_SEED"
	// DefaultFlips is the number of flips of a default run.
	DefaultFlips = 120
	// minFlipsPerFile is the least number of flips each non-empty file
	// gets (fewer only when the campaign has fewer flips than that for
	// every file).
	minFlipsPerFile = 3
)

// outcome is how one flip ended.
type outcome int

const (
	refusedNamingFile  outcome = iota // refused, naming the flipped file
	refusedNamingOther                // refused, naming another file of the directory
	intact                            // opened and loaded everything acknowledged
	refusedNamingNone                 // BAD: refused without naming a file
	otherError                        // BAD: an error IsCorrupt does not recognize
	lost                              // BAD: opened with less (or other) than acknowledged
	panicked                          // BAD: Open, Load or Close panicked
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"refused(file)", "refused(other)", "intact", "BAD:unnamed", "BAD:error", "BAD:lost", "BAD:panic"}

func (o outcome) bad() bool { return o >= refusedNamingNone }

// stopped is a stopped node's directory and what it acknowledged.
type stopped struct {
	acked core.Persisted   // the state after every acknowledged update
	snaps []*core.Snapshot // every snapshot acknowledged
}

// buildNode writes, in dir, what a node's storage holds after a life of
// Saves that mimic a node's: it joins with a leader snapshot, appends in
// small batches with the commit index trailing, sees two elections (each
// overwriting an uncommitted suffix), takes two local snapshots that
// compact the log, and is restarted twice. Every Save is synced and
// acknowledged.
func buildNode(t *testing.T, b Backend, dir string) stopped {
	t.Helper()
	rng := rand.New(rand.NewPCG(42, 42))
	m := newModel()
	var st stopped
	s := open(t, b, dir)
	term, vote, last, commit := uint64(1), uint64(2), uint64(40), uint64(40)
	save := func(u *node.Update) {
		t.Helper()
		u.Sync = true
		m.both(t, s, u)
		for _, sn := range []*core.Snapshot{u.Snapshot, u.LocalSnapshot} {
			if sn != nil {
				st.snaps = append(st.snaps, sn)
			}
		}
	}
	appendTo := func(to uint64) {
		for last < to {
			n := min(to-last, 1+rng.Uint64N(5))
			commit = max(commit, last-min(last, rng.Uint64N(3)))
			save(&node.Update{Entries: Entries(last+1, last+n, term), HardState: core.HardState{Term: term, Vote: vote, Commit: commit}})
			last += n
		}
		commit = last
		save(&node.Update{HardState: core.HardState{Term: term, Vote: vote, Commit: commit}})
	}
	// A new leader overwrites the last few (uncommitted) entries.
	election := func(newVote uint64) {
		term++
		vote = newVote
		save(&node.Update{HardState: core.HardState{Term: term, Vote: vote, Commit: commit}})
		from := commit + 1
		save(&node.Update{Entries: Entries(from, from+2, term), HardState: core.HardState{Term: term, Vote: vote, Commit: commit}})
		last = from + 2
	}
	restart := func() {
		MustClose(t, s)
		s = open(t, b, dir)
		m.check(t, s, "after a restart")
	}

	save(&node.Update{Snapshot: SnapshotAt(40, 1), HardState: core.HardState{Term: 1, Vote: vote, Commit: 40}})
	appendTo(120)
	commit -= 3 // entries 118..120 are not committed yet
	election(3)
	appendTo(200)
	restart()
	appendTo(320)
	save(&node.Update{LocalSnapshot: SnapshotAt(300, term), CompactTo: 280})
	appendTo(420)
	restart()
	commit -= 2
	election(1)
	appendTo(520)
	save(&node.Update{LocalSnapshot: SnapshotAt(500, term), CompactTo: 480})
	appendTo(545)
	m.check(t, s, "before stopping")
	MustClose(t, s)
	st.acked = m.m.Persisted()
	return st
}

// dirFile is a file of the data directory.
type dirFile struct {
	rel  string // relative path, with forward slashes
	size int64
}

// listFiles lists the regular files under dir, sorted by path.
func listFiles(t *testing.T, dir string) []dirFile {
	t.Helper()
	var out []dirFile
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		out = append(out, dirFile{rel: filepath.ToSlash(rel), size: info.Size()})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(out, func(a, b dirFile) int { return strings.Compare(a.rel, b.rel) })
	return out
}

// flip is one planned single-byte change.
type flip struct {
	file int // index in the file list
	off  int64
	mask byte // nonzero
}

// planFlips spreads n flips over the non-empty files: each gets
// minFlipsPerFile, the rest in proportion to size; offsets and masks are
// drawn from rng.
func planFlips(files []dirFile, n int, rng *rand.Rand) []flip {
	var nonEmpty []int
	var total int64
	for i, f := range files {
		if f.size > 0 {
			nonEmpty = append(nonEmpty, i)
			total += f.size
		}
	}
	if len(nonEmpty) == 0 {
		return nil
	}
	minPer := minFlipsPerFile
	if n < minPer*len(nonEmpty) {
		minPer = max(1, n/len(nonEmpty))
	}
	rest := max(0, n-minPer*len(nonEmpty))
	counts := make(map[int]int, len(nonEmpty))
	type frac struct {
		i int
		r int64
	}
	var fracs []frac
	given := 0
	for _, i := range nonEmpty {
		share := int64(rest) * files[i].size
		counts[i] = minPer + int(share/total)
		given += int(share / total)
		fracs = append(fracs, frac{i, share % total})
	}
	slices.SortStableFunc(fracs, func(a, b frac) int {
		switch {
		case a.r > b.r:
			return -1
		case a.r < b.r:
			return 1
		}
		return 0
	})
	for k := 0; given < rest; k++ {
		counts[fracs[k%len(fracs)].i]++
		given++
	}
	var plan []flip
	for _, i := range nonEmpty {
		for range counts[i] {
			plan = append(plan, flip{file: i, off: rng.Int64N(files[i].size), mask: byte(1 + rng.IntN(255))})
		}
	}
	rng.Shuffle(len(plan), func(a, b int) { plan[a], plan[b] = plan[b], plan[a] })
	return plan
}

// copyDir copies the regular files under src to dst.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o750)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, in)
		return errors.Join(err, out.Close())
	})
}

// flipByte xors the byte at off of the file at path with mask.
func flipByte(path string, off int64, mask byte) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	if err == nil {
		b[0] ^= mask
		_, err = f.WriteAt(b, off)
	}
	return errors.Join(err, f.Close())
}

// trial opens and loads the store in dir, whose file rel has one flipped
// byte, and says how that ended.
func trial(t *testing.T, b Backend, dir, rel string, also, names []string, st *stopped) (o outcome, detail string) {
	defer func() {
		if r := recover(); r != nil {
			o, detail = panicked, fmt.Sprint(r)
		}
	}()
	s, err := b.Open(t, dir)
	var p core.Persisted
	if err == nil {
		p, err = s.Load()
		err = errors.Join(err, s.Close())
	}
	if err != nil {
		msg := err.Error()
		switch {
		case !b.IsCorrupt(err):
			return otherError, msg
		case strings.Contains(msg, filepath.Base(rel)) || slices.ContainsFunc(also, func(n string) bool { return strings.Contains(msg, n) }):
			return refusedNamingFile, msg
		case strings.Contains(msg, dir) || slices.ContainsFunc(names, func(n string) bool { return strings.Contains(msg, n) }):
			return refusedNamingOther, msg
		}
		return refusedNamingNone, msg
	}
	if d := HoldsAcked(p, st.acked, st.snaps); d != "" {
		return lost, d
	}
	return intact, ""
}

// Corruption is the single-byte corruption campaign (see the package
// documentation).
func Corruption(t *testing.T, b Backend) {
	n := envInt(t, EnvFlips, DefaultFlips)
	seed := uint64(envInt(t, EnvFlipsSeed, 1))
	base := t.TempDir()
	src := filepath.Join(base, "node")
	st := buildNode(t, b, src)
	var files []dirFile
	if b.Damage != nil {
		for _, u := range b.Damage.Units(t, src) {
			files = append(files, dirFile{rel: u.Name, size: u.Size})
		}
	} else {
		files = listFiles(t, src)
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = filepath.Base(f.rel)
	}
	// The undamaged directory opens with everything.
	intactDir := src // a Damager's store is damaged in place and repaired
	if b.Damage == nil {
		intactDir = copyOf(t, src, filepath.Join(base, "intact"))
	}
	if o, d := trial(t, b, intactDir, "", nil, names, &st); o != intact {
		t.Fatalf("the undamaged directory: %s: %s", outcomeNames[o], d)
	}

	plan := planFlips(files, n, rand.New(rand.NewPCG(seed, 0x5eed)))
	counts := make([][numOutcomes]int, len(files))
	var failures []string
	for k, f := range plan {
		file := files[f.file]
		var (
			dir  string
			also []string
			undo func()
		)
		if b.Damage != nil {
			dir = src
			also, undo = b.Damage.Flip(t, dir, file.rel, f.off, f.mask)
		} else {
			dir = copyOf(t, src, filepath.Join(base, "trial-"+strconv.Itoa(k)))
			if err := flipByte(filepath.Join(dir, filepath.FromSlash(file.rel)), f.off, f.mask); err != nil {
				t.Fatal(err)
			}
		}
		o, detail := trial(t, b, dir, file.rel, also, names, &st)
		counts[f.file][o]++
		if o.bad() {
			failures = append(failures, fmt.Sprintf("flip %d: %s byte %d ^ %#02x: %s: %s", k, file.rel, f.off, f.mask, outcomeNames[o], detail))
		} else if testing.Verbose() && o != intact && k < 40 {
			t.Logf("flip %d: %s byte %d ^ %#02x: %s: %s", k, file.rel, f.off, f.mask, outcomeNames[o], detail)
		}
		if undo != nil {
			undo()
		} else if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%s corruption campaign: %d flips (seed %d) over %d files of a stopped node's directory (%d entries acknowledged after snapshot %d)\n%s",
		b.Name, len(plan), seed, len(files), len(st.acked.Entries), st.acked.Snapshot.Meta.Index, table(b, files, counts))
	for i, f := range failures {
		if i == 20 {
			t.Errorf("... and %d more", len(failures)-20)
			break
		}
		t.Error(f)
	}
}

// copyOf copies src to dst and returns dst.
func copyOf(t *testing.T, src, dst string) string {
	t.Helper()
	if err := copyDir(src, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

// table formats the campaign's counts per file and per kind of file.
func table(b Backend, files []dirFile, counts [][numOutcomes]int) string {
	kind := b.Kind
	if kind == nil {
		kind = defaultKind
	}
	var sb strings.Builder
	header := func(first string) {
		fmt.Fprintf(&sb, "%-40s %9s %6s", first, "bytes", "flips")
		for _, n := range outcomeNames {
			fmt.Fprintf(&sb, " %14s", n)
		}
		sb.WriteByte('\n')
	}
	row := func(name string, size int64, c [numOutcomes]int) {
		total := 0
		for _, v := range c {
			total += v
		}
		fmt.Fprintf(&sb, "%-40s %9d %6d", name, size, total)
		for _, v := range c {
			fmt.Fprintf(&sb, " %14d", v)
		}
		sb.WriteByte('\n')
	}
	header("file")
	kinds := map[string]*[numOutcomes]int{}
	kindSize := map[string]int64{}
	var order []string
	var all [numOutcomes]int
	for i, f := range files {
		name := f.rel
		if f.size == 0 {
			name += " (empty)"
		}
		row(name, f.size, counts[i])
		k := kind(f.rel)
		if kinds[k] == nil {
			kinds[k] = new([numOutcomes]int)
			order = append(order, k)
		}
		kindSize[k] += f.size
		for o, v := range counts[i] {
			kinds[k][o] += v
			all[o] += v
		}
	}
	sb.WriteByte('\n')
	header("kind of file")
	slices.Sort(order)
	for _, k := range order {
		row(k, kindSize[k], *kinds[k])
	}
	row("all", 0, all)
	return sb.String()
}

// defaultKind names a file's kind by its extension, or by its name without
// trailing digits.
func defaultKind(rel string) string {
	base := filepath.Base(rel)
	if ext := filepath.Ext(base); ext != "" {
		return ext
	}
	return strings.TrimRight(base, "0123456789")
}

// envInt reads a positive integer from the environment, or returns def.
func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}
