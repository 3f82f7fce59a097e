"""The state store: one interface, an in-process and a Redis implementation."""

from voxbus.common.store.base import ScoreRange, StateStore, StoreError, StoreMessage, Subscription

__all__ = ["ScoreRange", "StateStore", "StoreError", "StoreMessage", "Subscription"]
