"""Prometheus metrics of the telephony service (names `voxbus_telephony_*`)."""

from prometheus_client import Counter

from voxbus.common.consumer import ConsumerLag

WEBHOOKS = Counter(
    "voxbus_telephony_webhooks_total",
    "Carrier webhooks answered, by provider, webhook and outcome (ok, unsigned, invalid)",
    ["provider", "webhook", "outcome"],
)
CALL_EVENTS = Counter("voxbus_telephony_call_events_total", "Call events applied to call records", ["kind"])
CALL_EVENT_KINDS = ("CallMedia", "CallDtmf")  # what the events consumer applies (voxbus.telephony.events)
CALLS = Counter(
    "voxbus_telephony_calls_total",
    "Call statuses carriers reported, by carrier and status: a call counts once under each status it "
    "reaches (a retried webhook counts again); a status outside the carrier's documented set is `other`",
    ["carrier", "status"],
)
# each carrier's documented call statuses: the label stays bounded whatever a webhook says
CALL_STATUSES: dict[str, frozenset[str]] = {
    "vonage": frozenset(
        [
            "started",
            "ringing",
            "answered",
            "busy",
            "cancelled",
            "unanswered",
            "disconnected",
            "rejected",
            "failed",
            "human",
            "machine",
            "timeout",
            "completed",
        ]
    ),
    "twilio": frozenset(
        [
            "queued",
            "initiated",
            "ringing",
            "in-progress",
            "completed",
            "busy",
            "failed",
            "no-answer",
            "canceled",
        ]
    ),
    "exotel": frozenset(["completed", "failed", "busy", "no-answer"]),
}
PROMPTS = Counter("voxbus_telephony_prompts_total", "Prompts played to callers, by outcome", ["outcome"])
CONSUMER_LAG = ConsumerLag(
    "voxbus_telephony_consumer_lag_records", "Records of voxbus.events not yet read by the telephony service"
)


def call_status(carrier: str, status: str) -> None:
    """Count a status report (`CALLS`)."""
    known = status.lower()
    CALLS.labels(carrier, known if known in CALL_STATUSES[carrier] else "other").inc()


# each carrier's webhooks and the outcomes every one of them can have (Exotel's refusals:
# `unsigned`, wrong credentials; `address`, not from EXOTEL_ALLOWED_IPS)
WEBHOOK_OUTCOMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "vonage": (("answer", "event"), ("ok", "unsigned", "invalid")),
    "twilio": (("voice", "status"), ("ok", "unsigned", "invalid")),
    "exotel": (("stream", "passthru", "status"), ("ok", "invalid", "unsigned", "address")),
}


def declare() -> None:
    """Every bounded label set at 0, so a dashboard shows none rather than no data (and `rate()`
    sees a series' first event: one that appears at 1 has no earlier sample to rise from)."""
    for provider, (webhooks, outcomes) in WEBHOOK_OUTCOMES.items():
        for webhook in webhooks:
            for outcome in outcomes:
                WEBHOOKS.labels(provider, webhook, outcome)
    for carrier, statuses in CALL_STATUSES.items():
        for status in (*statuses, "other"):
            CALLS.labels(carrier, status)
    for outcome in ("prompt", "clear", "no_route"):
        PROMPTS.labels(outcome)
    for kind in CALL_EVENT_KINDS:
        CALL_EVENTS.labels(kind)
