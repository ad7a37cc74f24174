package main

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond // 1..100 ms
	}
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		q       float64
		want    time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one sample", []time.Duration{7}, 0.99, 7},
		{"p50 of 1..100", hundred, 0.50, 50 * time.Millisecond},
		{"p99 of 1..100", hundred, 0.99, 99 * time.Millisecond},
		{"p100 of 1..100", hundred, 1, 100 * time.Millisecond},
		{"p99 of 1..10 is the largest", hundred[:10], 0.99, 10 * time.Millisecond},
		{"p50 of 1..3 is the middle", []time.Duration{1, 2, 3}, 0.50, 2},
		{"p50 of 1..4 is the lower middle", []time.Duration{1, 2, 3, 4}, 0.50, 2},
		{"tiny q is the smallest", []time.Duration{1, 2, 3}, 0.0001, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.samples, tc.q); got != tc.want {
				t.Fatalf("percentile(%v, %v) = %v, want %v", tc.samples, tc.q, got, tc.want)
			}
		})
	}
	// percentiles sorts first.
	if p50, p99 := percentiles([]time.Duration{5, 1, 4, 2, 3}); p50 != 3 || p99 != 5 {
		t.Fatalf("percentiles of an unsorted set = %v, %v; want 3, 5", p50, p99)
	}
}

func TestParseStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       time.Duration
		wantErr    bool
	}{
		// utime (field 14) = 250 ticks, stime (field 15) = 30 ticks: 2.8 s.
		{"plain", "1234 (tokengate) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 8 0 100 0 0", 2800 * time.Millisecond, false},
		// A command name with spaces and a ')' must not shift the fields.
		{"name with spaces and parens", "99 (a b) c)) R 1 99 99 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 5 0 0", 100 * time.Millisecond, false},
		{"no parens", "1234 tokengate S 1", 0, true},
		{"truncated", "1234 (x) S 1 2 3", 0, true},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 3 0 0", 0, true},
		{"negative", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 -5 3 0 0", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU(tc.stat)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("parseStatCPU = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseStatusRSS(t *testing.T) {
	for _, tc := range []struct {
		name, status string
		want         int64
		wantErr      bool
	}{
		{"real layout", "Name:\ttokengate\nVmPeak:\t 1000 kB\nVmRSS:\t   20480 kB\nRssAnon:\t 1 kB\n", 20480 * 1024, false},
		{"VmRSS last without newline", "Name:\tx\nVmRSS:\t12 kB", 12 * 1024, false},
		{"missing", "Name:\tx\nVmSize:\t12 kB\n", 0, true},
		{"bad unit", "VmRSS:\t12 MB\n", 0, true},
		{"not a number", "VmRSS:\tlots kB\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatusRSS(tc.status)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("parseStatusRSS = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
