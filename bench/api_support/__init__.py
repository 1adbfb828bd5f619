"""Bench-only Django settings and URLconf for bench/api.py (never used by the application)."""
