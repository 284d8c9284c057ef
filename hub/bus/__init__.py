"""The bus interface and the factory that picks an implementation from the settings."""

from __future__ import annotations

from hub.bus.base import Bus, Handler, Incoming, Outgoing, Subscription
from hub.settings import Settings
from hub.store.db import Store

__all__ = ["Bus", "Handler", "Incoming", "Outgoing", "Subscription", "open_bus"]


def open_bus(settings: Settings, store: Store) -> Bus:
    """The embedded bus for ``embedded://``, RabbitMQ for ``amqp://`` and ``amqps://``."""
    if settings.uses_embedded_broker:
        from hub.bus.embedded import EmbeddedBus

        return EmbeddedBus(
            store, retry_delays=settings.retry_delays, delivery_limit=settings.delivery_limit,
            lease_seconds=settings.lease_seconds, batch_size=settings.batch_size,
        )
    from hub.bus.rabbitmq import RabbitBus

    return RabbitBus(
        settings.broker, store, exchange=settings.exchange, retry_delays=settings.retry_delays,
        delivery_limit=settings.delivery_limit, prefetch=settings.prefetch,
        batch_size=settings.batch_size, publish_timeout=settings.publish_timeout,
        connect_timeout=settings.connect_timeout, heartbeat=settings.heartbeat,
        tls=settings.broker_tls(),
    )
