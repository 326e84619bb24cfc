"""Explanations drawn from the formulas: the sliding window, one cell's arithmetic, a receptive field.

``featcli explain``: :mod:`featcli.explain.geometry` places a stage's windows (pure Python, from the shape
engine), :mod:`featcli.explain.numbers` walks them over given numbers, :mod:`featcli.explain.frames` draws
the frames and :mod:`featcli.explain.animate` encodes them (GIF, APNG; the same bytes every time);
:mod:`featcli.explain.cell` writes out one output cell of a stage on an image (``--at``) and
:mod:`featcli.explain.field` the receptive field of a stack (``--rf``).
"""
