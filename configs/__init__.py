"""YAML defaults per method / dataset / generator, and suites (installed as invbench.configs)."""
