"""Inversion method plugins, installed as ``invbench.methods`` (one module per method family)."""
