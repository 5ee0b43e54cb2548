//go:build linux

package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// printTable writes the medians of the rounds as a markdown table, one
// column per storage type.
func printTable(w io.Writer, cfg config, cells map[string][]*cell, recovers map[string]*recovery) {
	fmt.Fprintf(w, "medians of %d interleaved rounds; %d-byte entries; one Save at a time, each fsynced\n\n", cfg.rounds, cfg.size)
	fmt.Fprintln(w, "| | "+strings.Join(cfg.types, " | ")+" |")
	fmt.Fprintln(w, "|---|"+strings.Repeat("---:|", len(cfg.types)))
	row := func(name string, f func(t string) string) {
		r := "| " + name + " |"
		for _, t := range cfg.types {
			r += " " + f(t) + " |"
		}
		fmt.Fprintln(w, r)
	}
	for i, b := range cfg.batches {
		n := thousands(float64(b))
		row(fmt.Sprintf("appends/s, %s-entry Saves", n), func(t string) string {
			return thousands(cells[t][i].med(appendResult.rate))
		})
		row(fmt.Sprintf("fsyncs/s (per Save), %s-entry Saves", n), func(t string) string {
			perSec, perSave, ok := cells[t][i].fsyncRate()
			if !ok {
				return "–"
			}
			return fmt.Sprintf("%s (%.2f)", thousands(perSec), perSave)
		})
		row(fmt.Sprintf("Save p50 / p99, %s-entry Saves", n), func(t string) string {
			c := cells[t][i]
			p50 := c.med(func(a appendResult) float64 { return float64(a.q(0.5)) })
			p99 := c.med(func(a appendResult) float64 { return float64(a.q(0.99)) })
			return ms(time.Duration(p50)) + " / " + ms(time.Duration(p99))
		})
	}
	if len(recovers) == 0 {
		return
	}
	med := func(t string, f func(loadResult) float64) float64 {
		var v []float64
		for _, r := range recovers[t].runs {
			v = append(v, f(r))
		}
		return median(v)
	}
	row(fmt.Sprintf("recovery: Open + Load of %s entries", thousands(float64(cfg.recoverEntries))), func(t string) string {
		total := med(t, func(r loadResult) float64 { return float64(r.open + r.load) })
		open := med(t, func(r loadResult) float64 { return float64(r.open) })
		load := med(t, func(r loadResult) float64 { return float64(r.load) })
		return fmt.Sprintf("%s (%s + %s)", ms(time.Duration(total)), ms(time.Duration(open)), ms(time.Duration(load)))
	})
	row("CPU of that Open + Load, this process", func(t string) string {
		return ms(time.Duration(med(t, func(r loadResult) float64 { return float64(r.cpu) })))
	})
	row("peak RSS during that Open + Load", func(t string) string {
		return rss(int64(med(t, func(r loadResult) float64 { return float64(r.peakRSS) })))
	})
	row(fmt.Sprintf("disk bytes per entry, %s entries", thousands(float64(cfg.recoverEntries))), func(t string) string {
		return thousands(float64(recovers[t].diskUsed) / float64(cfg.recoverEntries))
	})
}

// thousands formats v rounded to an integer with commas every three
// digits.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func ms(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
}
