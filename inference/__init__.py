"""Attention scoring: the Scorer seam, its baseline, and (later) the learned model."""
