"""Grafana as code: provisioning, dashboards and alert rules for both store families (see generator/)."""
