"""Display scaling. Quantities are integers in base units everywhere else
(MACs, FLOPs, bytes); only what is shown to a person goes through here."""

from __future__ import annotations

_DECIMAL = [(10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K")]
_BINARY = [(2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")]


def format_count(value: int | float | None, digits: int = 2) -> str:
    """1_234_567 -> '1.23M'. None (unknown) -> '-'."""
    if value is None:
        return "-"
    for scale, suffix in _DECIMAL:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}f}{suffix}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def format_bytes(value: int | float | None, digits: int = 2) -> str:
    """3_276_800 -> '3.12MiB'."""
    if value is None:
        return "-"
    for scale, suffix in _BINARY:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}f}{suffix}"
    return f"{int(value)}B"
