"""Dataset plugins, installed as ``invbench.datasets`` (one module per dataset)."""
