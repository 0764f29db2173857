from django import template

from allocations.choices import DesktopStatus
from allocations.services.access import may_act_on

register = template.Library()


@register.filter
def may_open_console(desktop, user) -> bool:
    """``{% if desktop|may_open_console:user %}``: the desktop runs and ``user`` may act on it (its owner,
    or a platform admin), as the console page and its ticket require. For rows rendered without the
    page's ``can_act`` (the home page's lists)."""
    return desktop.status == DesktopStatus.RUNNING and may_act_on(user, desktop)
