from django.apps import AppConfig


class BookingsConfig(AppConfig):
    """Desktops booked for a future window, once or recurring, checked against the future (issue 18)."""

    name = "bookings"
    verbose_name = "Bookings"
    default_auto_field = "django.db.models.BigAutoField"
