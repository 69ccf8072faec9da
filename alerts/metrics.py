"""What matching, sending and webhooks count for Prometheus. Each process keeps its counts in files of its own
(prometheus_client's multiprocess mode, in METRICS_DIR); `alerts.metrics_page` serves the page that adds up
every process's counts with what the database holds.

Nothing here imports the rest of the project: every module that counts can import this one.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MATCH_SECONDS = Histogram("wqa_match_run_seconds", "Time to match one batch of events against every saved search.",
                          buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
MATCHES = Counter("wqa_matches", "Matches recorded (one per alert and question event).")
ESP_SECONDS = Histogram("wqa_esp_call_seconds", "Time of each call to the ESP (one email, or a batch of them).",
                        ["esp"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
EMAILS = Counter("wqa_emails", "Emails handed to the ESP, by outcome: sent, retry (due again later), "
                 "rejected (the address refused for good) or failed (given up).", ["outcome"])
ESP_ERRORS = Counter("wqa_esp_errors", "Emails the ESP did not take, by outcome and error class.",
                     ["outcome", "error"])
WEBHOOK_EVENTS = Counter("wqa_webhook_events", "Tracking events the ESP sent, by type (delivered, bounced, ...).",
                         ["esp", "type"])
