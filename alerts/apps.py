from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        from anymail.signals import tracking

        from alerts.webhooks import record_tracking_event

        tracking.connect(record_tracking_event, dispatch_uid="alerts.record_tracking_event")
