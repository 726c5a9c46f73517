"""Benchmarks of the gateway side by side with Orthanc and DCMTK storescp, in the same run on the same data.

Run `python -m bench --help` (or `make bench`); see bench/README.md for what each figure means.
"""
