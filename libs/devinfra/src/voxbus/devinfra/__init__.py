"""Real Apache Kafka 4.x and Redis 7 for voxbus tests and benchmark scripts.

`provide_kafka()` and `provide_redis()` are sync context managers. Each takes the service
from the environment (KAFKA_BOOTSTRAP_SERVERS / REDIS_URL) if set, else from a Docker
container via testcontainers if an engine answers, else from a local process (a Kafka
KRaft node run with java from Maven-fetched jars; redis-server), and stops what it
started on exit. `python -m voxbus.devinfra` runs them by hand. `kafka_tools_classpath()` is
the classpath of Kafka's own command-line tools, from the same jars (for the benchmarks).
"""

from voxbus.devinfra.endpoints import KafkaEndpoint, RedisEndpoint
from voxbus.devinfra.errors import InfraUnavailable
from voxbus.devinfra.kafka_fetch import kafka_tools_classpath
from voxbus.devinfra.provide import provide_kafka, provide_redis

__all__ = [
    "InfraUnavailable",
    "KafkaEndpoint",
    "RedisEndpoint",
    "kafka_tools_classpath",
    "provide_kafka",
    "provide_redis",
]
