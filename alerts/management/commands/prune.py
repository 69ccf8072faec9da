from django.core.management.base import BaseCommand

from alerts.retention import prune


class Command(BaseCommand):
    help = ("Delete what has outlived its retention period (source problems, webhook events, old emails, matched "
            "events, unconfirmed subscribers) and erase addresses that left; beat runs this every hour.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="only count what would be removed")
        parser.add_argument("--seconds", type=float, default=None,
                            help="stop between batches after this long (default RETENTION_RUN_SECONDS)")

    def handle(self, *args, dry_run, seconds, **options):
        self.stdout.write(str(prune(dry_run=dry_run, seconds=seconds)))
