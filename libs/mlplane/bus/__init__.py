from .base import Bus, Handler, RetryPolicy, dlq_topic, topic_name

__all__ = ["Bus", "Handler", "RetryPolicy", "dlq_topic", "topic_name"]
