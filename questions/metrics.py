"""What the poller counts for Prometheus; `alerts.metrics_page` serves the page that adds up every process's counts."""

from __future__ import annotations

from prometheus_client import Counter

POLLS = Counter("wqa_polls", "Polls of each source, by outcome: ok, error (recorded on the source), crashed "
                "or skipped (another poll of it was running).", ["source", "outcome"])
QUESTIONS_STORED = Counter("wqa_questions_stored", "Questions stored by polls, by source and change (new or updated).",
                           ["source", "change"])
EVENTS_STORED = Counter("wqa_events_stored", "Question events stored by polls, by kind.", ["kind"])
ITEMS_REFUSED = Counter("wqa_source_items_refused", "Items a source sent that could not be used.", ["source"])
