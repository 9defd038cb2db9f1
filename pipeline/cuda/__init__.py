"""Pure CUDA plumbing for the GPU path: pinned double-buffered uploads, CUDA graphs (need torch)."""
