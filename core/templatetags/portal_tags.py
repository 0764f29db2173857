from django import template

register = template.Library()


@register.filter
def filesizeformat_mib(value) -> str:
    """1536 → '1.5 GiB', 512 → '512 MiB'."""
    try:
        mib = int(value)
    except (TypeError, ValueError):
        return ""
    if mib >= 1024:
        gib = mib / 1024
        return f"{gib:.0f} GiB" if gib == int(gib) else f"{gib:.1f} GiB"
    return f"{mib} MiB"
