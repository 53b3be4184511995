"""invbench: a unified benchmark suite for GAN inversion."""

__version__ = "0.1.0"
