"""Prometheus metrics of the projector (served on ``PROJECTOR_METRICS_PORT``, 9091)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_PROCESSED = Counter(
    "projector_events_processed",
    "Chaincode events by outcome: success (applied), failed (malformed or handler error, the projector "
    "stops at it), skipped (unknown event name).",
    ["status"],
)
for _status in ("success", "failed", "skipped"):
    EVENTS_PROCESSED.labels(_status)

EVENTS_SKIPPED = Counter(
    "projector_events_skipped_by_name", "Events skipped because no handler knows their name.", ["event_name"],
)
UNKNOWN_USERS = Counter(
    "projector_unknown_user_effects",
    "Effects left out because the on-chain user id matches no local user (e.g. created by another backend).",
    ["event_name"],
)
BLOCKCHAIN_HEIGHT = Gauge("projector_blockchain_height", "Ledger height from qscc GetChainInfo (newest block + 1).")
LAG_BLOCKS = Gauge("projector_lag_blocks", "Blocks between the newest block and the last fully projected one.")
PROCESSING_DURATION = Histogram(
    "projector_processing_duration_seconds", "Time to apply one block and commit it with the checkpoint.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
LAST_EVENT_AGE = Gauge("projector_last_event_age_seconds",
                       "Seconds since the last applied event (informational: an idle chain is not lag).")
IS_LEADER = Gauge("projector_is_leader", "1 when this process holds the projector lock and applies blocks.")
CHECKPOINT_BLOCK = Gauge("projector_checkpoint_block", "Next block the projector reads (its checkpoint).")
STUCK = Gauge("projector_stuck", "1 while the projector is stopped at a failing event (see projector_status).")
STREAM_RECONNECTS = Counter("projector_stream_reconnects", "Event stream (re)connections after an error.")
