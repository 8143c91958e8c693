"""The logs service: inference logs and their summaries, webhooks out and in."""
