# Airflow 3.3.2 with this repository's plugin installed, for compose/docker-compose.yml.
# Build context: the repository root.
FROM apache/airflow:3.3.2
COPY --chown=airflow:0 pyproject.toml README.md /opt/airflow-otel/
COPY --chown=airflow:0 otel_plugin /opt/airflow-otel/otel_plugin
# Pin Airflow itself so installing the plugin can never up- or downgrade it (the image's own advice).
RUN pip install --no-cache-dir "apache-airflow==3.3.2" /opt/airflow-otel
