"""Notifications: webhooks told when a sync or reset fails (or succeeds, or is cancelled, when
they opt in) and when a connection is disabled.

The store writes each event into its outbox in the transaction that ends the job
(:mod:`ferryman.store.notify_ops`); a :class:`Dispatcher` posts them, with retries and backoff, as
a Slack-compatible or a JSON payload (:mod:`ferryman.notifications.payloads`).
"""

from __future__ import annotations

from ferryman.notifications.dispatcher import Delivery, DeliveryPolicy, Dispatcher, public_url
from ferryman.notifications.payloads import job_link, render, shown_url

__all__ = ["Delivery", "DeliveryPolicy", "Dispatcher", "job_link", "public_url", "render", "shown_url"]
