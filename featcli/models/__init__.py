"""Whole networks: a PyTorch module (``module:attr``), an ONNX file or a ``.pt2`` export run on an image, every
layer measured (shape, parameters, MACs, statistics, the formula engine's prediction) and the chosen layers'
maps kept for drawing and saving."""
