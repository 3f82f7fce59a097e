"""What the bus itself counts, whichever service produces through it."""

from prometheus_client import Counter

PRODUCE_ERRORS = Counter(
    "voxbus_bus_produce_errors_total",
    "Records Kafka did not take, by topic and stage: refused when sent (send), or sent and not "
    "acknowledged (delivery); the client whose record it was is told",
    ["topic", "stage"],
)
STAGES = ("send", "delivery")
