"""detops: reproducible train / evaluate / deploy pipelines for real-time object detectors."""

__version__ = "0.1.0"
