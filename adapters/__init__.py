"""Environments for the JitRL agent, Gymnasium-style (reset/step) with candidate actions."""

from adapters.base import AdapterError, Environment

__all__ = ["AdapterError", "Environment"]
