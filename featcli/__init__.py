"""featcli: a command-line explorer of CNN feature maps and shapes.

The package is usable as a library: core modules (``imageio``, ``shapes``, ``kernels``, ``ops``,
``render``) never import typer or rich, and heavy imports (torch, matplotlib) happen inside the
functions that need them.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
