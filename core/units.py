"""Memory shown to people in one unit: GiB with one decimal (pages, charts' labels and messages alike)."""


def gib(mib) -> str:
    """512 → '0.5 GiB', 16384 → '16.0 GiB'; '' for something that is not a number."""
    try:
        return f"{int(mib) / 1024:.1f} GiB"
    except (TypeError, ValueError):
        return ""
