// Package exemplarsprocessor carries each delta point's exemplars across delta_to_cumulative.
//
// Why: delta_to_cumulative keeps one state point per stream, copied from the stream's FIRST delta, and adds
// later deltas' counts into it without touching its exemplars; every cumulative point it emits is a copy of
// that state. So a stream's exemplars are its first point's, for the life of the stream, and the exemplars
// of every later delta (the trace of the run that just finished) are dropped.
//
// Two instances around delta_to_cumulative fix that, in one pipeline:
//
//	processors: [..., exemplars/stash, delta_to_cumulative, exemplars/restore, ...]
//	exemplars/stash:   {mode: stash}    # remembers each delta point's exemplars, by stream, in the request's context
//	exemplars/restore: {mode: restore}  # gives each point the exemplars stashed for its stream (none: none)
//
// The stash travels with the request (context.Context), which delta_to_cumulative passes on unchanged, so
// nothing is shared between requests and nothing outlives one. Points are matched by resource attributes,
// scope, metric name and point attributes, which delta_to_cumulative does not change. Only DELTA metrics are
// stashed; restore only touches the points of metrics that were stashed.
package exemplarsprocessor // import "github.com/airflow-otel/otelcol-airflow/exemplarsprocessor"

import (
	"context"
	"encoding/json"
	"fmt"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
)

const (
	typeStr     = "exemplars"
	modeStash   = "stash"
	modeRestore = "restore"
)

// Config selects what an instance does.
type Config struct {
	// Mode is "stash" (before delta_to_cumulative) or "restore" (right after it).
	Mode string `mapstructure:"mode"`
}

// Validate rejects an unknown mode.
func (c *Config) Validate() error {
	if c.Mode != modeStash && c.Mode != modeRestore {
		return fmt.Errorf("exemplars: mode must be %q or %q, not %q", modeStash, modeRestore, c.Mode)
	}
	return nil
}

// NewFactory is the builder's entry point.
func NewFactory() processor.Factory {
	return processor.NewFactory(
		component.MustNewType(typeStr),
		func() component.Config { return &Config{Mode: modeStash} },
		processor.WithMetrics(create, component.StabilityLevelDevelopment),
	)
}

func create(_ context.Context, _ processor.Settings, cfg component.Config, next consumer.Metrics) (processor.Metrics, error) {
	return &exemplars{restore: cfg.(*Config).Mode == modeRestore, next: next}, nil
}

type stashKey struct{}

// stash: stream key -> that stream's exemplars in this request; metric keys: metrics that were stashed.
type stash struct {
	points  map[string]pmetric.ExemplarSlice
	metrics map[string]bool
}

type exemplars struct {
	component.StartFunc
	component.ShutdownFunc
	restore bool
	next    consumer.Metrics
}

func (*exemplars) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: true}
}

func (p *exemplars) ConsumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	if !p.restore {
		s := &stash{points: map[string]pmetric.ExemplarSlice{}, metrics: map[string]bool{}}
		walk(md, func(metricKey string, delta bool, key func(pcommon.Map) string, exemplars func(int) (pcommon.Map, pmetric.ExemplarSlice), n int) {
			if !delta {
				return
			}
			s.metrics[metricKey] = true
			for i := 0; i < n; i++ {
				attrs, ex := exemplars(i)
				kept := pmetric.NewExemplarSlice()
				ex.CopyTo(kept)
				s.points[key(attrs)] = kept
			}
		})
		return p.next.ConsumeMetrics(context.WithValue(ctx, stashKey{}, s), md)
	}
	if s, ok := ctx.Value(stashKey{}).(*stash); ok {
		walk(md, func(metricKey string, _ bool, key func(pcommon.Map) string, exemplars func(int) (pcommon.Map, pmetric.ExemplarSlice), n int) {
			if !s.metrics[metricKey] {
				return
			}
			for i := 0; i < n; i++ {
				attrs, ex := exemplars(i)
				if kept, found := s.points[key(attrs)]; found {
					kept.CopyTo(ex)
				} else {
					ex.RemoveIf(func(pmetric.Exemplar) bool { return true })
				}
			}
		})
	}
	return p.next.ConsumeMetrics(ctx, md)
}

// walk calls visit once per metric with: the metric's key, whether it is DELTA, a function that makes a
// point's stream key from its attributes, the point accessor and the number of points.
func walk(md pmetric.Metrics, visit func(string, bool, func(pcommon.Map) string, func(int) (pcommon.Map, pmetric.ExemplarSlice), int)) {
	rms := md.ResourceMetrics()
	for r := 0; r < rms.Len(); r++ {
		rm := rms.At(r)
		resource := encode(rm.Resource().Attributes())
		sms := rm.ScopeMetrics()
		for s := 0; s < sms.Len(); s++ {
			sm := sms.At(s)
			scope := sm.Scope().Name() + "\x00" + sm.Scope().Version() + "\x00" + encode(sm.Scope().Attributes())
			ms := sm.Metrics()
			for m := 0; m < ms.Len(); m++ {
				metric := ms.At(m)
				metricKey := resource + "\x00" + scope + "\x00" + metric.Name() + "\x00" + metric.Type().String()
				key := func(attrs pcommon.Map) string { return metricKey + "\x00" + encode(attrs) }
				switch metric.Type() {
				case pmetric.MetricTypeSum:
					dps := metric.Sum().DataPoints()
					visit(metricKey, metric.Sum().AggregationTemporality() == pmetric.AggregationTemporalityDelta, key,
						func(i int) (pcommon.Map, pmetric.ExemplarSlice) { return dps.At(i).Attributes(), dps.At(i).Exemplars() }, dps.Len())
				case pmetric.MetricTypeHistogram:
					dps := metric.Histogram().DataPoints()
					visit(metricKey, metric.Histogram().AggregationTemporality() == pmetric.AggregationTemporalityDelta, key,
						func(i int) (pcommon.Map, pmetric.ExemplarSlice) { return dps.At(i).Attributes(), dps.At(i).Exemplars() }, dps.Len())
				case pmetric.MetricTypeExponentialHistogram:
					dps := metric.ExponentialHistogram().DataPoints()
					visit(metricKey, metric.ExponentialHistogram().AggregationTemporality() == pmetric.AggregationTemporalityDelta, key,
						func(i int) (pcommon.Map, pmetric.ExemplarSlice) { return dps.At(i).Attributes(), dps.At(i).Exemplars() }, dps.Len())
				}
			}
		}
	}
}

// encode is a canonical form of an attribute map (encoding/json sorts map keys).
func encode(attrs pcommon.Map) string {
	b, err := json.Marshal(attrs.AsRaw())
	if err != nil {
		return fmt.Sprint(attrs.AsRaw())
	}
	return string(b)
}
