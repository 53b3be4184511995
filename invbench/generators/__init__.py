"""The generator zoo, installed as ``invbench.generators`` (one module per generator family)."""

from invbench.generators.base import GanTraining, Generator

__all__ = ["GanTraining", "Generator"]
