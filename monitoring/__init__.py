"""Operator-side tooling: PromQL extraction, a real-Prometheus test harness, panel rendering."""
