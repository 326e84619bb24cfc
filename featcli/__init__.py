"""featcli: a command-line explorer of CNN feature maps and shapes.

The package is usable as a library. Its sub-packages are its layers (docs/DESIGN.md): ``stages`` (the stage
language and the op registry), ``shape`` (torch-exact shape arithmetic), ``kernels``, ``io``, ``render``,
``engine`` (plan, one execution loop, torch and NumPy backends), ``run`` (one image or a batch) and ``cli``.
Only ``cli`` imports typer or rich; heavy imports (torch, matplotlib) happen inside the functions that need
them.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
