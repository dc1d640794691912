"""The inbox: the durable store between ingest and delivery (`base` holds the contract)."""

from receiver.inbox.base import QUARANTINE, DeadLetter, Delivery, Inbox, InboxStats

__all__ = ["QUARANTINE", "DeadLetter", "Delivery", "Inbox", "InboxStats"]
