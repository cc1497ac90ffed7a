"""Generates everything under grafana/ from the query catalogue (otel_plugin.readback.queries).

``python -m grafana.generator`` (or ``make grafana``) writes the files; ``--check`` only compares. The
committed JSON and YAML are outputs: change the code here and regenerate, never edit them by hand.
"""
