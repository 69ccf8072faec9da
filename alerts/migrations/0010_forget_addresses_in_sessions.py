"""Sessions written before "check your inbox" moved to a signed cookie hold the address typed into a form
(and its search) under "alerts.sent_to" until they expire, up to two weeks later: it goes now."""

from django.contrib.sessions.backends.db import SessionStore
from django.db import migrations

TYPED_ADDRESS = "alerts.sent_to"


def forget_typed_addresses(apps, schema_editor):
    Session = apps.get_model("sessions", "Session")
    store = SessionStore()
    # Sessions are signed: only their own store can read and rewrite them. What it cannot read (a key long
    # rotated out) no visitor can use either, and pruning clears it once expired.
    holding = {}
    for key, encoded in Session.objects.values_list("pk", "session_data").iterator(chunk_size=500):
        data = store.decode(encoded)
        if data.pop(TYPED_ADDRESS, None) is not None:
            holding[key] = data
    # Rewritten once read through: SQLite does not keep a table being read apart from writes to it.
    for key, data in holding.items():
        if data:
            Session.objects.filter(pk=key).update(session_data=store.encode(data))
        else:
            Session.objects.filter(pk=key).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("alerts", "0009_webhook_tokens"),
        ("sessions", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(forget_typed_addresses, migrations.RunPython.noop),
    ]
