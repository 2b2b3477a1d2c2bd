"""Benchmarks of the serving API: a load generator written for the job, the scenarios of
docs/benchmarks.md, and the report. `python -m benchmarks run` runs everything."""
