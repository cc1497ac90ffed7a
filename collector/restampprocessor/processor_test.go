package restampprocessor

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// One delta sum, one delta histogram and one cumulative sum, each with one point dated by a sender.
func request() pmetric.Metrics {
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	sum := ms.AppendEmpty().SetEmptySum()
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	hist := ms.AppendEmpty().SetEmptyHistogram()
	hist.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	cumulative := ms.AppendEmpty().SetEmptySum()
	cumulative.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	for _, dp := range []interface {
		SetStartTimestamp(pcommon.Timestamp)
		SetTimestamp(pcommon.Timestamp)
	}{sum.DataPoints().AppendEmpty(), hist.DataPoints().AppendEmpty(), cumulative.DataPoints().AppendEmpty()} {
		dp.SetStartTimestamp(7)
		dp.SetTimestamp(8)
	}
	return md
}

type stamp struct{ start, time time.Time }

func (s stamp) is(start, time time.Time) bool { return s.start.Equal(start) && s.time.Equal(time) }

// stamps of the three points of each request the processor passed on.
func run(t *testing.T, p *restamp, requests int) [][3]stamp {
	t.Helper()
	var got [][3]stamp
	p.next, _ = consumer.NewMetrics(func(_ context.Context, md pmetric.Metrics) error {
		ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
		s, h, c := ms.At(0).Sum().DataPoints().At(0), ms.At(1).Histogram().DataPoints().At(0), ms.At(2).Sum().DataPoints().At(0)
		got = append(got, [3]stamp{
			{s.StartTimestamp().AsTime(), s.Timestamp().AsTime()},
			{h.StartTimestamp().AsTime(), h.Timestamp().AsTime()},
			{c.StartTimestamp().AsTime(), c.Timestamp().AsTime()},
		})
		return nil
	})
	for i := 0; i < requests; i++ {
		if err := p.ConsumeMetrics(context.Background(), request()); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

func TestDeltaPointsAreDatedByArrivalWithTheStartLeadBefore(t *testing.T) {
	clock := time.Unix(1_000_000, 0)
	p := &restamp{lead: time.Second, floor: clock.Add(-time.Hour), now: func() time.Time { return clock }}
	got := run(t, p, 1)[0]
	if !got[0].is(clock.Add(-time.Second), clock) || !got[1].is(clock.Add(-time.Second), clock) {
		t.Fatalf("delta points: got %v and %v, want start %v, time %v", got[0], got[1], clock.Add(-time.Second), clock)
	}
	if !got[2].is(time.Unix(0, 7), time.Unix(0, 8)) {
		t.Fatalf("a cumulative point was restamped: %v", got[2])
	}
}

func TestTheStartNeverPrecedesTheProcessStart(t *testing.T) {
	floor := time.Unix(1_000_000, 0)
	clock := floor.Add(300 * time.Millisecond) // a delta that waited in the disk queue, just after a restart
	p := &restamp{lead: time.Second, floor: floor, now: func() time.Time { return clock }}
	if got := run(t, p, 1)[0][0]; !got.is(floor, clock) {
		t.Fatalf("got %v, want the start at the process start %v", got, floor)
	}
	clock = floor.Add(500 * time.Microsecond) // even closer: the start still lies 1 ms before the time
	p = &restamp{lead: time.Second, floor: floor, now: func() time.Time { return clock }}
	if got := run(t, p, 1)[0][0]; !got.is(clock.Add(-time.Millisecond), clock) {
		t.Fatalf("got %v, want the start 1 ms before %v", got, clock)
	}
}

func TestArrivalsStrictlyIncreaseWhenTheClockStandsStillOrGoesBack(t *testing.T) {
	clocks := []time.Time{time.Unix(2_000, 0), time.Unix(2_000, 0), time.Unix(1_999, 0)}
	i := 0
	p := &restamp{lead: time.Second, floor: time.Unix(0, 0), now: func() time.Time { i++; return clocks[i-1] }}
	got := run(t, p, 3)
	for k := 1; k < len(got); k++ {
		if !got[k][0].time.After(got[k-1][0].time) {
			t.Fatalf("request %d dated %v, not after %v", k, got[k][0].time, got[k-1][0].time)
		}
	}
}

func TestConfigRejectsALeadUnderOneMillisecond(t *testing.T) {
	if err := (&Config{StartLead: 500 * time.Microsecond}).Validate(); err == nil {
		t.Fatal("a 0.5 ms lead was accepted")
	}
	if err := (&Config{StartLead: time.Second}).Validate(); err != nil {
		t.Fatal(err)
	}
}
