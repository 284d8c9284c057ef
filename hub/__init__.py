"""The integration hub: canonical model, store, bus and daemon shared by every connector."""

__all__ = ["__version__"]

__version__ = "0.1.0"
