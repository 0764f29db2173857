"""``{% notification_bell %}``: the header's bell with the signed-in person's unread count (one query);
static/js/notifications.js keeps it current from the live socket."""

from django import template
from django.template.loader import render_to_string

from notifications.services import unread_count

register = template.Library()


@register.simple_tag(takes_context=True)
def notification_bell(context) -> str:
    user = context.get("user")
    if user is None or not user.is_authenticated:
        return ""
    return render_to_string("notifications/_bell.html", {"unread": unread_count(user)})
