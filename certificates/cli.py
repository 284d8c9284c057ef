"""``hub token ...`` and ``hub certificate ...``: API tokens, and certificates from the shell.

Registered on the hub's command line by :mod:`hub.cli`. Imports stay light here; the service
(and WeasyPrint, when a PDF is rendered) load when a command runs.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import click

from certificates.labels import LANGUAGES
from hub.settings import Settings

__all__ = ["certificate", "token"]


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


@click.group()
def token() -> None:
    """API tokens: who may call the certificate API."""


@token.command("create")
@click.option("--customer", metavar="CODE", help="A customer's token: sees its own batches.")
@click.option("--staff", metavar="NAME", help="A staff member's token: sees every batch.")
@click.pass_context
def token_create(ctx: click.Context, customer: str | None, staff: str | None) -> None:
    """Print a new API token (shown once: the hub keeps only its SHA-256)."""
    from hub.errors import HubError
    from hub.store import Store
    from hub.tokens import CUSTOMER, STAFF, ApiTokens

    if (customer is None) == (staff is None):
        raise click.UsageError("name exactly one of --customer CODE or --staff NAME")
    store = Store(_settings(ctx).database)
    try:
        store.migrate()
        with store.begin() as conn:
            if customer is not None:
                token_id, secret = ApiTokens.create(conn, CUSTOMER, customer)
            else:
                token_id, secret = ApiTokens.create(conn, STAFF, staff or "")
    except (ValueError, HubError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.dispose()
    who = f"customer {customer}" if customer is not None else f"staff member {staff}"
    click.echo(f"token {token_id} for {who}; keep it safe, it is not shown again:", err=True)
    click.echo(secret)


@token.command("list")
@click.pass_context
def token_list(ctx: click.Context) -> None:
    """List tokens (never the tokens themselves)."""
    from hub.store import Store
    from hub.tokens import ApiTokens

    store = Store(_settings(ctx).database)
    try:
        store.migrate()
        with store.begin() as conn:
            tokens = ApiTokens.list(conn)
    finally:
        store.dispose()
    if not tokens:
        click.echo("no tokens")
        return
    click.echo(f"{'ID':>5}  {'KIND':8}  {'WHO':24}  {'CREATED':19}  REVOKED")
    for t in tokens:
        revoked = f"{t.revoked_at:%Y-%m-%d %H:%M:%S}" if t.revoked_at else "-"
        click.echo(f"{t.id:>5}  {t.kind:8}  {t.subject[:24]:24}  "
                   f"{t.created_at:%Y-%m-%d %H:%M:%S}  {revoked}")


@token.command("revoke")
@click.argument("token_id", type=int)
@click.pass_context
def token_revoke(ctx: click.Context, token_id: int) -> None:
    """Revoke a token by its id (servers stop accepting it within 30 seconds)."""
    from hub.store import Store
    from hub.tokens import ApiTokens

    store = Store(_settings(ctx).database)
    try:
        store.migrate()
        with store.begin() as conn:
            revoked = ApiTokens.revoke(conn, token_id)
    finally:
        store.dispose()
    if not revoked:
        raise click.ClickException(f"no live token {token_id}")
    click.echo(f"token {token_id} revoked")


@click.group()
def certificate() -> None:
    """Certificates of analysis."""


@certificate.command("get")
@click.argument("batch")
@click.option("--customer", metavar="CODE",
              help="Whose certificate (needed when several customers got the batch).")
@click.option("--version", "version", type=click.IntRange(min=1), default=None,
              help="This version [default: the latest, issuing a new one if the LIMS "
                   "data changed].")
@click.option("--lang", type=click.Choice(LANGUAGES), default="en", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the PDF.")
@click.pass_context
def certificate_get(ctx: click.Context, batch: str, customer: str | None, version: int | None,
                    lang: str, output: Path) -> None:
    """Write BATCH's certificate as a PDF, issuing it first if needed and possible."""
    from certificates.service import NotAvailable
    from certificates.standalone import opened
    from hub.errors import HubError

    try:
        with opened(_settings(ctx)) as service:
            if customer is None:
                customers = service.customers(batch)
                if not customers:
                    raise click.ClickException(
                        f"batch {batch} was not delivered to any customer (no certificate)")
                if len(customers) > 1:
                    raise click.ClickException(
                        f"batch {batch} went to several customers: name one with --customer "
                        f"({', '.join(customers)})")
                customer = customers[0]
            if version is None:
                outcome = service.ensure(batch, customer, refresh=True)
                info = outcome.certificate
                if outcome.issued:
                    click.echo(f"issued {info.label}", err=True)
                if outcome.held:
                    click.echo(f"warning: newer LIMS data could not be certified "
                               f"({outcome.held}); this is {info.label}", err=True)
            else:
                found = service.find(batch, customer, version)
                if found is None and version == 1 and service.find(batch, customer) is None:
                    found = service.ensure(batch, customer).certificate
                if found is None:
                    raise click.ClickException(
                        f"certificate of batch {batch} for {customer} has no version {version}")
                info = found
            pdf = service.pdf(info, lang)
    except LookupError as exc:
        raise click.ClickException(
            f"batch {batch} was not delivered to customer {customer}") from exc
    except NotAvailable as exc:
        raise click.ClickException(
            f"the certificate of batch {batch} is not available: {exc.reason}") from exc
    except HubError as exc:
        raise click.ClickException(str(exc)) from exc
    output.write_bytes(pdf)
    state = "" if info.superseded_by is None else f", superseded by v{info.superseded_by}"
    click.echo(f"{output}: {info.label} ({lang}{state}), "
               f"sha256 {hashlib.sha256(pdf).hexdigest()}")


@certificate.command("render-missing")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes [default: one per core].")
@click.pass_context
def certificate_render_missing(ctx: click.Context, workers: int | None) -> None:
    """Issue every missing certificate of delivered, authorised batches."""
    from certificates.bulk import default_workers, learn_deliveries, missing, render_missing
    from certificates.standalone import opened
    from hub.errors import HubError

    count = workers or default_workers()
    settings = _settings(ctx)
    try:
        with opened(settings) as service:
            learned = learn_deliveries(service)
            if learned:
                click.echo(f"recorded {learned} delivered batch line(s) from the ERP", err=True)
            work = missing(service)
            total = sum(len(customers) for customers in work.values())
            with click.progressbar(length=total, label=f"issuing ({count} workers)",
                                   file=sys.stderr, show_pos=True) as bar:
                tally = render_missing(
                    service, work, workers=count, advance=bar.update,
                    renders_per_process=settings.certificate_renders_per_process)
    except HubError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"issued {tally.issued}, already current {tally.current}, lot not authorised "
               f"{tally.waiting}, blocked {tally.blocked}, failed {tally.failed}")
    for reason in tally.reasons:
        click.echo(f"  {reason}")
    if tally.failed:
        sys.exit(1)
