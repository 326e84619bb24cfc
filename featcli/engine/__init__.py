"""The execution layer: the plan (engine/plan.py), the one loop (engine/loop.py), the torch and NumPy
backends (one function per registry op) and the choice between them (engine/backends.py), the streamed band
strategy, and device resolution."""
