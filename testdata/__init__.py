"""Deterministic synthetic DICOM corpus for tests, demos and benchmarks."""
