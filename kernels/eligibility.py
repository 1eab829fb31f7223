"""Eligibility over the campaign index's flat arrays (numpy, vectorised).

Each function is a whole-array operation over the N index rows, so the cost per
request is a handful of passes over N bytes, independent of Python per row.
"""

from __future__ import annotations

import numpy as np


def admit(untargeted: np.ndarray, rows_by_value: dict[str, np.ndarray], values) -> np.ndarray:
    """Rows that target nothing on this attribute, or target one of `values`. [N] bool"""
    ok = untargeted.copy()
    for value in values:
        rows = rows_by_value.get(value)
        if rows is not None:
            ok[rows] = True
    return ok


def device_ok(row_devices: np.ndarray, devicetype: int) -> np.ndarray:
    """Rows whose device-type bitset admits `devicetype` (0 = unknown). [N] bool"""
    return (row_devices & np.uint8(1 << devicetype)) != 0


def block(mask: np.ndarray, rows_by_value: dict[str, np.ndarray], values) -> None:
    """Clear, in place, the rows listed under any of the blocked `values`."""
    for value in values:
        rows = rows_by_value.get(value)
        if rows is not None:
            mask[rows] = False


def banner_fit(is_banner: np.ndarray, row_size: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Banner rows whose size key is one of the imp's allowed sizes. [N] bool"""
    fit = np.zeros(len(row_size), dtype=bool)
    for key in sizes:
        fit |= row_size == key
    return fit & is_banner


def video_fit(
    is_video: np.ndarray,
    row_mime: np.ndarray,
    row_duration: np.ndarray,
    mimes: list[int],
    minduration: int,
    maxduration: int,
) -> np.ndarray:
    """Video rows with an accepted mime and a duration inside the imp's range. [N] bool"""
    fit = np.zeros(len(row_mime), dtype=bool)
    for mime in mimes:
        fit |= row_mime == mime
    fit &= is_video & (row_duration >= minduration)
    if maxduration > 0:
        fit &= row_duration <= maxduration
    return fit


def first_per_group(rows: np.ndarray, group_of_row: np.ndarray) -> np.ndarray:
    """Keep the first of each run of rows with the same group (rows sorted by group)."""
    if rows.size < 2:
        return rows
    groups = group_of_row[rows]
    keep = np.empty(rows.size, dtype=bool)
    keep[0] = True
    np.not_equal(groups[1:], groups[:-1], out=keep[1:])
    return rows[keep]
