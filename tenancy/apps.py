from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "tenancy"
    verbose_name = "Tenants and roles"
    default_auto_field = "django.db.models.BigAutoField"
