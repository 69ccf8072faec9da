from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        from anymail.signals import tracking
        from django.db.models.signals import post_migrate

        from config.schedule import sync_after_migrate

        post_migrate.connect(sync_after_migrate, sender=self, dispatch_uid="config.schedule.sync")

        from alerts.webhooks import record_tracking_event

        tracking.connect(record_tracking_event, dispatch_uid="alerts.record_tracking_event")
        from alerts.canary import check_delivery
        from questions.health import CHECKS

        CHECKS["delivery"] = check_delivery
        # Registered in every process, not only workers: a web request that queues an email wakes the
        # sender by the task's name.
        import alerts.checks  # noqa: F401
        import alerts.tasks  # noqa: F401
        import config.proxy  # noqa: F401 - its checks
