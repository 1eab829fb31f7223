"""Numba kernels (CPU and CUDA) for eligibility, ranking and pricing, and their oracles."""
