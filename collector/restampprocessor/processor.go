// Package restampprocessor dates every DELTA point by its arrival, for delta_to_cumulative behind it.
//
//	processors: [..., restamp, delta_to_cumulative, ...]
//	restamp: {start_lead: 1s}
//
// Time: the arrival (this request's clock reading, strictly later than the previous request's), so that
// one consumer's requests are in order for delta_to_cumulative, whatever the senders' clocks said.
//
// Start: start_lead before the arrival, but never before this process started. delta_to_cumulative gives a
// new stream the start of its first point, and Prometheus (created-timestamp zero ingestion) stores that
// start as a 0 sample, which makes the first increment count in increase(). Prometheus dates a scrape by
// when it began, and the exporter may already hold the new total when the scrape reads it a few ms later:
// a 0 dated after that scraped sample reads as a counter reset and the increment counts twice (seen: a
// scrape dated 2 ms before the push's 0). start_lead puts the 0 before any scrape that can see the total.
// The floor keeps the 0 after every sample of the previous Collector process (it is dead before this one
// starts), so the reset after a restart is never dated among the old stream's samples.
package restampprocessor // import "github.com/airflow-otel/otelcol-airflow/restampprocessor"

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
)

const typeStr = "restamp"

// processStart is read when the binary initialises: before any of its exporters serves a scrape.
var processStart = time.Now()

// Config of an instance.
type Config struct {
	// StartLead is how long before its arrival a point's start lies (floored at the process start). Longer
	// than the time a scrape takes from its timestamp to reading the exporter; 1 ms at least.
	StartLead time.Duration `mapstructure:"start_lead"`
}

// Validate rejects a lead under 1 ms: the 0 sample must precede the first value in Prometheus's resolution.
func (c *Config) Validate() error {
	if c.StartLead < time.Millisecond {
		return fmt.Errorf("restamp: start_lead must be at least 1ms, not %s", c.StartLead)
	}
	return nil
}

// NewFactory is the builder's entry point.
func NewFactory() processor.Factory {
	return processor.NewFactory(
		component.MustNewType(typeStr),
		func() component.Config { return &Config{StartLead: time.Second} },
		processor.WithMetrics(create, component.StabilityLevelDevelopment),
	)
}

func create(_ context.Context, _ processor.Settings, cfg component.Config, next consumer.Metrics) (processor.Metrics, error) {
	return &restamp{lead: cfg.(*Config).StartLead, floor: processStart, now: time.Now, next: next}, nil
}

type restamp struct {
	component.StartFunc
	component.ShutdownFunc
	lead  time.Duration
	floor time.Time
	now   func() time.Time
	next  consumer.Metrics

	mu   sync.Mutex
	last time.Time // the previous request's arrival
}

func (*restamp) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: true}
}

// stamps: this request's arrival (after the previous one's) and the start its points get.
func (p *restamp) stamps() (pcommon.Timestamp, pcommon.Timestamp) {
	p.mu.Lock()
	arrival := p.now()
	if !arrival.After(p.last) {
		arrival = p.last.Add(time.Nanosecond)
	}
	p.last = arrival
	p.mu.Unlock()
	start := arrival.Add(-p.lead)
	if start.Before(p.floor) {
		start = p.floor
	}
	if latest := arrival.Add(-time.Millisecond); start.After(latest) {
		start = latest
	}
	return pcommon.NewTimestampFromTime(start), pcommon.NewTimestampFromTime(arrival)
}

func (p *restamp) ConsumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	start, arrival := p.stamps()
	rms := md.ResourceMetrics()
	for r := 0; r < rms.Len(); r++ {
		sms := rms.At(r).ScopeMetrics()
		for s := 0; s < sms.Len(); s++ {
			ms := sms.At(s).Metrics()
			for m := 0; m < ms.Len(); m++ {
				switch metric := ms.At(m); metric.Type() {
				case pmetric.MetricTypeSum:
					if metric.Sum().AggregationTemporality() == pmetric.AggregationTemporalityDelta {
						stampAll(metric.Sum().DataPoints(), start, arrival)
					}
				case pmetric.MetricTypeHistogram:
					if metric.Histogram().AggregationTemporality() == pmetric.AggregationTemporalityDelta {
						stampAll(metric.Histogram().DataPoints(), start, arrival)
					}
				case pmetric.MetricTypeExponentialHistogram:
					if metric.ExponentialHistogram().AggregationTemporality() == pmetric.AggregationTemporalityDelta {
						stampAll(metric.ExponentialHistogram().DataPoints(), start, arrival)
					}
				}
			}
		}
	}
	return p.next.ConsumeMetrics(ctx, md)
}

type stampable interface {
	SetStartTimestamp(pcommon.Timestamp)
	SetTimestamp(pcommon.Timestamp)
}

func stampAll[P stampable, S interface {
	Len() int
	At(int) P
}](points S, start, arrival pcommon.Timestamp) {
	for i := 0; i < points.Len(); i++ {
		points.At(i).SetStartTimestamp(start)
		points.At(i).SetTimestamp(arrival)
	}
}
