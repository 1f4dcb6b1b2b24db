"""vaedx: variational autoencoders for medical image anomaly detection and diagnosis."""

__version__ = "0.1.0"
