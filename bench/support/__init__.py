"""Helpers shared by the benchmarks: CPU accounting from /proc and the wrk load generator (never run alone)."""
