"""Fit frames into the network input: ``host.py`` (numpy + OpenCV) and ``device.py`` (torch
tensors, the GPU path), the same rules and rounding; ``prepare(image, fit)`` in each."""
