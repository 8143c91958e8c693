from .base import LogFilters, LogStore, StaleWrite

__all__ = ["LogFilters", "LogStore", "StaleWrite"]
