"""Prometheus metrics of the telephony service (names `voxbus_telephony_*`)."""

from prometheus_client import Counter

from voxbus.common.consumer import ConsumerLag

WEBHOOKS = Counter(
    "voxbus_telephony_webhooks_total",
    "Carrier webhooks answered, by provider, webhook and outcome (ok, unsigned, invalid)",
    ["provider", "webhook", "outcome"],
)
CALL_EVENTS = Counter("voxbus_telephony_call_events_total", "Call events applied to call records", ["kind"])
PROMPTS = Counter("voxbus_telephony_prompts_total", "Prompts played to callers, by outcome", ["outcome"])
CONSUMER_LAG = ConsumerLag(
    "voxbus_telephony_consumer_lag_records", "Records of voxbus.events not yet read by the telephony service"
)
