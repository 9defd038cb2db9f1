"""Drawing detections on frames: ``host.py`` (numpy + OpenCV) and ``device.py`` (mask tints and
box outlines on the frame tensor, the GPU path; labels and the HUD are then drawn on the host)."""
