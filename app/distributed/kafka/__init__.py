"""Kafka adapters of the distributed runtime (confluent-kafka): request queue, changelog consumer, topics, broker."""
