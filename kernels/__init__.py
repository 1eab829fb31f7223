"""Vectorised kernels for the auction's eligibility, ranking and pricing stages."""
