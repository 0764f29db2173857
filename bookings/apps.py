from django.apps import AppConfig


class BookingsConfig(AppConfig):
    """Desktops booked for a future window, once or recurring, checked against the future (issue 18)."""

    name = "bookings"
    verbose_name = "Bookings"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from allocations.placement.whatif_demand import DEMAND_PROVIDERS
        from allocations.services.lifecycle import EXTENSION_GUARDS
        from allocations.services.overview_panels import OVERVIEW_PANELS
        from allocations.services.request import CAPACITY_HOLDS
        from bookings.held import booked_ahead, overview_panel
        from bookings.services import hold_capacity, refuse_extension

        for registry, hook in (
            (CAPACITY_HOLDS, hold_capacity),  # on-demand requests leave booked capacity alone
            (OVERVIEW_PANELS, overview_panel),  # the fleet overview shows what is held, the next week
            (DEMAND_PROVIDERS, booked_ahead),  # the what-if replays the booked windows ahead
            (EXTENSION_GUARDS, refuse_extension),  # a booked desktop ends with its window
        ):
            if hook not in registry:
                registry.append(hook)
