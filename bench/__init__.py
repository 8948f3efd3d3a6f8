"""Benchmarks (not tests): `make bench` and `make load`. See bench/README.md."""
