"""The hub's own tables. Alembic migrations under ``migrations/`` create and evolve them.

- ``id_xref``: which record in one system is which record in another (one canonical id per
  order, line or party, one row per system that knows it).
- ``sync_state``: the last state the hub synced for each bound record, the base of the
  three-way merge.
- ``watermark`` / ``watermark_seen``: how far each source has been read, and what was read in
  the overlap window, so a late commit is not missed and nothing is read twice.
- ``outbox``: messages committed together with the state change that caused them; the relay
  publishes them.
- ``inbox``: message ids a consumer has applied, so a redelivery has no second effect.
- ``journal``: the life of every message, for trace and metrics.
- ``journal_tally``: counts of the journal entries pruned, so metrics never count back.
- ``dead_letter``: messages that could not be applied, with the reason, until replayed or
  discarded.
- ``bus_binding`` / ``bus_message``: the embedded bus's durable queues.
- ``conflict``: fields changed on both sides of a bound record, and which side won.
- ``component``: each running part's heartbeat and figures, for ``status``.
- ``api_token``: API tokens (their SHA-256 only) of customers and staff.
- ``entitlement``: which customer the ERP delivered which batch to (one row per delivery
  line and batch), the basis of every certificate and of who may read it.
- ``certificate`` / ``certificate_file``: issued certificates of analysis (one row per
  version, with the data snapshot and verification token) and their PDFs per language.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from hub.store.types import NAMING_CONVENTION, Blob, LongText, Quantity, UtcDateTime

__all__ = [
    "api_token", "bus_binding", "bus_message", "certificate", "certificate_file", "component",
    "conflict", "dead_letter", "entitlement", "id_xref", "inbox", "journal", "journal_tally",
    "metadata", "outbox", "sync_state", "watermark", "watermark_seen",
]

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: An auto-incrementing 64-bit key that SQLite also accepts as its rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")

id_xref = Table(
    "id_xref", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(20), nullable=False),
    Column("canonical_id", String(36), nullable=False),
    Column("system", String(10), nullable=False),
    Column("local_key", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("kind", "system", "local_key"),
    UniqueConstraint("kind", "canonical_id", "system"),
)

sync_state = Table(
    "sync_state", metadata,
    Column("kind", String(20), primary_key=True),
    Column("canonical_id", String(36), primary_key=True),
    Column("state", Text, nullable=False),
    Column("versions", Text, nullable=False, default="{}"),
    Column("updated_at", UtcDateTime, nullable=False),
)

watermark = Table(
    "watermark", metadata,
    Column("source", String(80), primary_key=True),
    Column("position", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
)

watermark_seen = Table(
    "watermark_seen", metadata,
    Column("source", String(80), primary_key=True),
    Column("row_key", String(100), primary_key=True),
    Column("row_version", String(64), primary_key=True),
    Column("changed_at", UtcDateTime, nullable=False),
    Index("ix_watermark_seen_source_changed_at", "source", "changed_at"),
)

outbox = Table(
    "outbox", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("message_id", String(36), nullable=False, unique=True),
    Column("routing_key", String(200), nullable=False),
    Column("type", String(40), nullable=False),
    Column("correlation_key", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    # When the source committed the change (the message's occurred_at), sent as a header.
    Column("occurred_at", UtcDateTime, nullable=True),
)

inbox = Table(
    "inbox", metadata,
    Column("consumer", String(80), primary_key=True),
    Column("message_id", String(36), primary_key=True),
    Column("processed_at", UtcDateTime, nullable=False, index=True),
)

journal = Table(
    "journal", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("event", String(20), nullable=False),
    Column("message_id", String(36), nullable=True, index=True),
    Column("type", String(40), nullable=True),
    Column("correlation_key", String(64), nullable=True),
    Column("source", String(10), nullable=True),
    Column("target", String(80), nullable=True),
    Column("outcome", String(20), nullable=True),
    Column("duration_ms", Float, nullable=True),
    Column("error", Text, nullable=True),
    Column("detail", Text, nullable=True),
    # 'applied' entries: source commit (the message's occurred_at) to target commit.
    Column("latency_ms", Float, nullable=True),
    Index("ix_journal_correlation_key_at", "correlation_key", "at"),
    # hub.readings counts by outcome, time and route from this index alone.
    Index("ix_journal_event_at_route", "event", "at", "type", "source", "target", "latency_ms"),
)

journal_tally = Table(
    "journal_tally", metadata,
    Column("event", String(20), primary_key=True),
    Column("type", String(40), primary_key=True),
    Column("source", String(10), primary_key=True),
    Column("target", String(80), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("latency_count", BigInteger, nullable=False),
    Column("latency_sum", Float, nullable=False),  # seconds
    Column("latency_buckets", Text, nullable=False),  # {"<bound seconds>": cumulative count}
)

dead_letter = Table(
    "dead_letter", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("message_id", String(36), nullable=False, index=True),
    Column("queue", String(200), nullable=False),
    Column("routing_key", String(200), nullable=False),
    Column("type", String(40), nullable=True),
    Column("correlation_key", String(64), nullable=True, index=True),
    Column("body", Text, nullable=False),
    Column("headers", Text, nullable=False, default="{}"),
    Column("reason", Text, nullable=False),
    Column("error_code", String(40), nullable=False),
    Column("attempts", Integer, nullable=False, default=1),
    Column("dead_at", UtcDateTime, nullable=False, index=True),
    Column("status", String(12), nullable=False, default="dead"),
    Column("resolved_at", UtcDateTime, nullable=True),
    Column("resolved_by", String(80), nullable=True),
    Column("note", Text, nullable=True),
    Index("ix_dead_letter_status_queue", "status", "queue"),
)

bus_binding = Table(
    "bus_binding", metadata,
    Column("queue", String(200), primary_key=True),
    Column("pattern", String(200), primary_key=True),
)

bus_message = Table(
    "bus_message", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("queue", String(200), nullable=False),
    Column("message_id", String(36), nullable=False),
    Column("routing_key", String(200), nullable=False),
    Column("headers", Text, nullable=False, default="{}"),
    Column("body", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("available_at", UtcDateTime, nullable=False),
    Column("lease_until", UtcDateTime, nullable=True),
    Column("lease_owner", String(36), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_bus_message_queue_available", "queue", "available_at", "id"),
)

conflict = Table(
    "conflict", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    Column("canonical_id", String(36), nullable=False),
    Column("correlation_key", String(64), nullable=True, index=True),
    Column("field", String(40), nullable=False),
    Column("crm_value", Text, nullable=True),
    Column("erp_value", Text, nullable=True),
    Column("base_value", Text, nullable=True),
    Column("winner", String(10), nullable=False),
    Column("message_id", String(36), nullable=True),
)

component = Table(
    "component", metadata,
    Column("name", String(80), primary_key=True),
    Column("process", String(80), nullable=False),
    Column("state", String(20), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("heartbeat_at", UtcDateTime, nullable=False),
    Column("last_poll_at", UtcDateTime, nullable=True),
    Column("detail", Text, nullable=False, default="{}"),
)

api_token = Table(
    "api_token", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),  # SHA-256; never the token
    Column("kind", String(10), nullable=False),  # customer | staff
    Column("subject", String(80), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

entitlement = Table(
    "entitlement", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("batch_number", String(36), nullable=False),
    Column("customer", String(15), nullable=False),
    Column("customer_name", String(100), nullable=True),
    Column("order_key", String(64), nullable=True),
    Column("delivery_doc_entry", Integer, nullable=False),
    Column("delivery_doc_num", Integer, nullable=False),
    Column("delivery_line", Integer, nullable=False),
    Column("delivery_date", Date, nullable=False),
    Column("product_code", String(50), nullable=False),
    Column("quantity", Quantity, nullable=False),
    Column("uom", String(10), nullable=True),
    Column("recorded_at", UtcDateTime, nullable=False),
    UniqueConstraint("delivery_doc_entry", "delivery_line", "batch_number"),
    Index("ix_entitlement_batch_number_customer", "batch_number", "customer"),
)

certificate = Table(
    "certificate", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("number", String(64), nullable=False),
    Column("batch_number", String(36), nullable=False),
    Column("customer", String(15), nullable=False),
    Column("version", Integer, nullable=False),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("verify_token", String(64), nullable=False, unique=True),
    # SHA-256 of the BatchQuality without CHANGED_ON: a new version only when this changes.
    Column("quality_hash", String(64), nullable=False),
    Column("lims_changed_on", UtcDateTime, nullable=True),
    Column("data", LongText, nullable=False),  # the CertificateData snapshot (JSON)
    Column("superseded_by", Integer, nullable=True),  # the successor's version
    Column("superseded_at", UtcDateTime, nullable=True),
    UniqueConstraint("batch_number", "customer", "version"),
    Index("ix_certificate_superseded_by", "superseded_by"),
)

certificate_file = Table(
    "certificate_file", metadata,
    Column("certificate_id", BigId, ForeignKey("certificate.id"), primary_key=True,
           autoincrement=False),
    Column("lang", String(5), primary_key=True),
    Column("pdf", Blob, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("rendered_at", UtcDateTime, nullable=False),
    Column("render_ms", Float, nullable=True),  # how long the render took
    # hub.readings counts renders from this index, never touching the PDFs.
    Index("ix_certificate_file_lang_render_ms", "lang", "render_ms"),
)
