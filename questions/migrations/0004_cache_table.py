"""The database cache's table, so that `migrate` alone gives a working site: without Redis, rate limits
and cached lists live there."""

from django.core.management.commands.createcachetable import Command as CreateCacheTable
from django.db import migrations


def create_cache_table(apps, schema_editor):
    # The name that config/settings.py gives the database cache; an existing table is left as it is.
    command = CreateCacheTable()
    command.verbosity = 0
    command.create_table(schema_editor.connection.alias, "cache", dry_run=False)


class Migration(migrations.Migration):
    dependencies = [("questions", "0003_default_source_and_schedule")]
    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
