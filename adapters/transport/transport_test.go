package transport

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/core"
)

func validConfig() Config {
	return Config{ID: 1, ListenAddr: "127.0.0.1:0", Deliver: func(core.Message) {}}
}

func TestConfigValidate(t *testing.T) {
	ok := validConfig()
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	if d := ok.WithDefaults(); d.Validate() != nil || d.MaxMessageBytes != DefaultMaxMessageBytes ||
		d.QueueSize != DefaultQueueSize || d.DialTimeout != DefaultDialTimeout ||
		d.WriteTimeout != DefaultWriteTimeout || d.BackoffMin != DefaultBackoffMin ||
		d.BackoffMax != DefaultBackoffMax || d.BreakerFailures != DefaultBreakerFailures || d.Logger == nil {
		t.Fatalf("WithDefaults = %+v", d)
	}
	cases := []struct {
		field  string
		change func(*Config)
	}{
		{"ID", func(c *Config) { c.ID = 0 }},
		{"ListenAddr", func(c *Config) { c.ListenAddr = "" }},
		{"Deliver", func(c *Config) { c.Deliver = nil }},
		{"MaxMessageBytes", func(c *Config) { c.MaxMessageBytes = -1 }},
		{"MaxMessageBytes", func(c *Config) { c.MaxMessageBytes = MaxFrameLimit + 1 }},
		{"QueueSize", func(c *Config) { c.QueueSize = -1 }},
		{"DialTimeout", func(c *Config) { c.DialTimeout = -time.Second }},
		{"WriteTimeout", func(c *Config) { c.WriteTimeout = -time.Second }},
		{"BackoffMin", func(c *Config) { c.BackoffMin = -time.Second }},
		{"BackoffMax", func(c *Config) { c.BackoffMax = -time.Second }},
		{"BackoffMin", func(c *Config) { c.BackoffMin, c.BackoffMax = time.Second, time.Millisecond }},
		{"BreakerFailures", func(c *Config) { c.BreakerFailures = -1 }},
	}
	for _, tc := range cases {
		c := validConfig()
		tc.change(&c)
		err := c.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig naming the field", tc.field, err)
		}
	}
	// A BackoffMin above the default maximum is valid; the default
	// maximum follows it.
	c := validConfig()
	c.BackoffMin = 5 * time.Second
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if d := c.WithDefaults(); d.BackoffMax != 5*time.Second {
		t.Fatalf("BackoffMax = %v", d.BackoffMax)
	}
}

func TestCheckInbound(t *testing.T) {
	enc := func(m core.Message) []byte {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := enc(core.Message{Type: core.MsgHeartbeat, From: 1, To: 2, Term: 1})
	if m, err := CheckInbound(good, 2, 1, 100); err != nil || m.From != 1 {
		t.Fatalf("valid message: %+v, %v", m, err)
	}
	cases := []struct {
		name            string
		payload         []byte
		self, peer, max uint64
		want            error
	}{
		{"too large", good, 2, 1, uint64(len(good) - 1), ErrMessageTooLarge},
		{"garbage", []byte("garbage"), 2, 1, 100, core.ErrInvalidMessage},
		{"invalid", enc(core.Message{Type: core.MsgHeartbeat, From: 1, To: 2, Reject: true}), 2, 1, 100, core.ErrInvalidMessage},
		{"wrong recipient", good, 3, 1, 100, ErrWrongRecipient},
		{"wrong sender", good, 2, 4, 100, ErrWrongSender},
	}
	for _, c := range cases {
		if _, err := CheckInbound(c.payload, c.self, c.peer, int(c.max)); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	for i, ceil := range []time.Duration{10, 20, 40, 80, 80, 80} {
		ceil *= time.Millisecond
		for range 20 {
			c := b
			d := c.Next()
			if d < ceil/2 || d > ceil {
				t.Fatalf("attempt %d: delay %v outside [%v, %v]", i, d, ceil/2, ceil)
			}
		}
		b.Next()
	}
	b.Reset()
	if d := b.Next(); d > 10*time.Millisecond {
		t.Fatalf("after Reset: %v", d)
	}
	var zero Backoff
	if d := zero.Next(); d <= 0 || d > DefaultBackoffMin {
		t.Fatalf("zero Backoff: %v", d)
	}
}

func TestBreaker(t *testing.T) {
	now := time.Unix(1000, 0)
	b := NewBreaker(3, time.Second)
	for i := range 2 {
		if !b.Allow(now) || b.Failure(now) {
			t.Fatalf("failure %d opened the breaker early", i+1)
		}
	}
	b.Success() // resets the count
	for i := range 2 {
		b.Failure(now)
		if b.State(now) != BreakerClosed {
			t.Fatalf("open after %d failures following a success", i+1)
		}
	}
	if !b.Failure(now) || b.State(now) != BreakerOpen || b.Allow(now) {
		t.Fatal("not open after 3 consecutive failures")
	}
	if b.Allow(now.Add(999 * time.Millisecond)) {
		t.Fatal("allowed while open")
	}
	later := now.Add(time.Second)
	if b.State(later) != BreakerHalfOpen {
		t.Fatalf("state %v after the cool-down, want half-open", b.State(later))
	}
	if !b.Allow(later) || b.Allow(later) {
		t.Fatal("half-open must allow exactly one probe")
	}
	if !b.Failure(later) || b.State(later) != BreakerOpen {
		t.Fatal("a failed probe must reopen the breaker")
	}
	evenLater := later.Add(time.Second)
	if !b.Allow(evenLater) {
		t.Fatal("no probe after the second cool-down")
	}
	b.Success()
	if b.State(evenLater) != BreakerClosed || !b.Allow(evenLater) || !b.Allow(evenLater) {
		t.Fatal("a successful probe must close the breaker")
	}
	for _, s := range []BreakerState{BreakerClosed, BreakerOpen, BreakerHalfOpen, 9} {
		if s.String() == "" {
			t.Fatal("empty state name")
		}
	}
}
