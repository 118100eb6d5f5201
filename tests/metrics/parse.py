"""Reads Prometheus text from stdin with prometheus_client's own parser (a scraper's view)
and prints its samples as JSON: {"name{label=value,...}": value}. Exits 1 if it does not
parse."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

samples = {}
types = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    types[family.name] = family.type
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        samples[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps({"samples": samples, "types": types}))
