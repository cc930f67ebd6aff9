"""Notifications: tenants' webhook subscriptions, per-query callbacks and the SNS topic of terminal job events.

The project's bus carries every event; a rule routes ``source: spectra`` to the notify queue, whose consumer
(:mod:`spectra.notify.fanout`) makes each matching subscription's first attempt, a POST signed by the Standard Webhooks
convention, and publishes terminal job events to the SNS topic. A failed attempt is retried with exponential backoff
and jitter through the delivery queue, by the delivery consumer (:mod:`spectra.notify.delivery`), which also makes
the first attempts a notifier batch had too many of.

Modules: ``models`` (subscriptions, filters, webhook ids), ``urls`` (where a webhook may point: the SSRF rules),
``transport`` (the HTTP POST, pinned to the checked address), ``signing``, ``store`` (subscriptions in DynamoDB),
``channels`` (the delivery queue and the SNS topic), ``service`` (what the API does), ``fanout`` and ``delivery``
(what the two consumers do).
"""
