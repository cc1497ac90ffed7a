package exemplarsprocessor

import (
	"context"
	"testing"

	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// A delta histogram point with one exemplar of the given trace, for dag_id=dag.
func request(dag string, trace byte) pmetric.Metrics {
	md := pmetric.NewMetrics()
	m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("duration")
	h := m.SetEmptyHistogram()
	h.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	dp := h.DataPoints().AppendEmpty()
	dp.Attributes().PutStr("dag_id", dag)
	ex := dp.Exemplars().AppendEmpty()
	ex.SetTraceID(pcommon.TraceID{trace})
	return md
}

// Stands in for delta_to_cumulative: every point leaves with the stream's first exemplars, as cumulative.
func stale(first pmetric.ExemplarSlice) func(context.Context, pmetric.Metrics) (pmetric.Metrics, error) {
	return func(_ context.Context, md pmetric.Metrics) (pmetric.Metrics, error) {
		m := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0)
		m.Histogram().SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		first.CopyTo(m.Histogram().DataPoints().At(0).Exemplars())
		return md, nil
	}
}

func TestExemplarsOfEachRequestSurviveTheStep(t *testing.T) {
	var got []pmetric.Metrics
	sink, _ := consumer.NewMetrics(func(_ context.Context, md pmetric.Metrics) error { got = append(got, md); return nil })
	restore := &exemplars{restore: true, next: sink}
	first := request("a", 1).ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Histogram().DataPoints().At(0).Exemplars()
	step, _ := consumer.NewMetrics(func(ctx context.Context, md pmetric.Metrics) error {
		out, _ := stale(first)(ctx, md)
		return restore.ConsumeMetrics(ctx, out)
	})
	stashing := &exemplars{next: step}
	for _, trace := range []byte{1, 2, 3} {
		if err := stashing.ConsumeMetrics(context.Background(), request("a", trace)); err != nil {
			t.Fatal(err)
		}
	}
	for i, md := range got {
		ex := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Histogram().DataPoints().At(0).Exemplars()
		if ex.Len() != 1 || ex.At(0).TraceID() != (pcommon.TraceID{byte(i + 1)}) {
			t.Fatalf("request %d: exemplars %v", i+1, ex.At(0).TraceID())
		}
	}
}

func TestRestoreWithoutStashChangesNothing(t *testing.T) {
	var got pmetric.Metrics
	sink, _ := consumer.NewMetrics(func(_ context.Context, md pmetric.Metrics) error { got = md; return nil })
	if err := (&exemplars{restore: true, next: sink}).ConsumeMetrics(context.Background(), request("a", 7)); err != nil {
		t.Fatal(err)
	}
	ex := got.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Histogram().DataPoints().At(0).Exemplars()
	if ex.Len() != 1 || ex.At(0).TraceID() != (pcommon.TraceID{7}) {
		t.Fatalf("exemplars changed: %d", ex.Len())
	}
}

func TestUnknownModeIsRejected(t *testing.T) {
	if (&Config{Mode: "keep"}).Validate() == nil {
		t.Fatal("mode keep accepted")
	}
}
