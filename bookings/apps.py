from django.apps import AppConfig


class BookingsConfig(AppConfig):
    """Desktops booked for a future window, once or recurring, checked against the future (issue 18)."""

    name = "bookings"
    verbose_name = "Bookings"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from allocations.services.request import CAPACITY_HOLDS
        from bookings.services import hold_capacity

        if hold_capacity not in CAPACITY_HOLDS:
            CAPACITY_HOLDS.append(hold_capacity)  # on-demand requests leave booked capacity alone
