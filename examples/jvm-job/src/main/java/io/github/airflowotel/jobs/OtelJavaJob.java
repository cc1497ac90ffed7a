package io.github.airflowotel.jobs;

import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.metrics.LongCounter;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.Scope;
import io.opentelemetry.context.propagation.TextMapGetter;
import io.opentelemetry.sdk.OpenTelemetrySdk;
import io.opentelemetry.sdk.autoconfigure.AutoConfiguredOpenTelemetrySdk;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * A JVM job reporting to an Airflow run through the airflow-otel-plugin pipeline with the plain OpenTelemetry
 * Java SDK: no plugin code, everything from the environment the Airflow task hands the job
 * ({@code otel_plugin.api.job_env()}; recipe and variables: docs/jobs.md).
 *
 * <pre>
 * OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318  OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
 * OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta   # each JVM sends only what it added
 * OTEL_RESOURCE_ATTRIBUTES=dag_id=etl,task_id=load,run_id=...,try_number=1,map_index=-1
 * TRACEPARENT=00-&lt;trace id&gt;-&lt;task try's span id&gt;-01      # the job's span joins the run's trace
 * java -jar otel-java-job.jar records_loaded 42
 * </pre>
 *
 * <p>Adds {@code amount} to the delta counter {@code counterName} (label {@code outcome="ok"}; the Collector
 * adds {@code dag_id} and {@code task_id} from the resource and drops the run-scoped attributes) inside one
 * span "java job" whose parent is the task try's span, then shuts the SDK down, which flushes both.
 */
public final class OtelJavaJob {
  private static final String SCOPE = "io.github.airflowotel.jobs";

  /**
   * Environment variables as a propagation carrier (OpenTelemetry's env-carrier convention): the
   * propagator asks for "traceparent", the variable is TRACEPARENT.
   */
  static final TextMapGetter<Map<String, String>> ENVIRONMENT =
      new TextMapGetter<>() {
        @Override
        public Iterable<String> keys(Map<String, String> env) {
          return env.keySet();
        }

        @Override
        public String get(Map<String, String> env, String key) {
          if (env == null) {
            return null;
          }
          return env.get(key.toUpperCase(Locale.ROOT).replaceAll("[^A-Z0-9]", "_"));
        }
      };

  private OtelJavaJob() {}

  public static void main(String[] args) {
    String counterName = args.length > 0 ? args[0] : "java_job.records";
    long amount = args.length > 1 ? Long.parseLong(args[1]) : 1;

    // Reads every OTEL_* variable: endpoint, headers, protocol, temporality, resource attributes.
    OpenTelemetrySdk sdk = AutoConfiguredOpenTelemetrySdk.initialize().getOpenTelemetrySdk();
    try {
      Context parent =
          sdk.getPropagators()
              .getTextMapPropagator()
              .extract(Context.root(), System.getenv(), ENVIRONMENT);
      Tracer tracer = sdk.getTracer(SCOPE);
      LongCounter counter =
          sdk.getMeter(SCOPE)
              .counterBuilder(counterName)
              .setDescription("Records this JVM job processed")
              .build();

      Span span = tracer.spanBuilder("java job").setParent(parent).startSpan();
      try (Scope ignored = span.makeCurrent()) {
        counter.add(amount, Attributes.of(AttributeKey.stringKey("outcome"), "ok"));
        span.setAttribute("records", amount);
      } finally {
        span.end();
      }
    } finally {
      // Flushes the last metric delta and the span (exported in parallel, each bounded by the exporter
      // timeout). Bounded here too: a job must not hang at exit on a hung Collector. What is not sent by
      // then is lost: a plain SDK keeps no spool.
      sdk.shutdown().join(exportTimeoutMillis() + 1000, TimeUnit.MILLISECONDS);
    }
  }

  /** OTEL_EXPORTER_OTLP_TIMEOUT in milliseconds (the SDK's default: 10 s). */
  static long exportTimeoutMillis() {
    String raw = System.getenv("OTEL_EXPORTER_OTLP_TIMEOUT");
    try {
      return raw == null || raw.isBlank() ? 10_000 : Long.parseLong(raw.trim());
    } catch (NumberFormatException e) {
      return 10_000;
    }
  }
}
