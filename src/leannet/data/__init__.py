"""Data sources by name: each gives train and validation sets plus what a model needs to know."""
from leannet.data.registry import DataSource, get_source, list_sources, register_source

__all__ = ["DataSource", "get_source", "list_sources", "register_source"]
