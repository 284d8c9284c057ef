"""The command line: ``python -m hub ...`` (also installed as ``hub``)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from certificates.cli import certificate, token
from hub.settings import Settings

__all__ = ["main"]


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="batch-hub")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Integration hub between CRM, ERP and LIMS. Configured by HUB_* environment variables."""
    from hub.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    ctx.obj = settings


@cli.command()
@click.option("--only", "only", multiple=True, metavar="NAME",
              help="Run only this part (repeatable): relay, deadletters, housekeeping, http, ...")
@click.option("--without", "without", multiple=True, metavar="NAME",
              help="Run every part but this one (repeatable), e.g. to run it in a process of "
                   "its own with --only.")
@click.option("--parent", type=int, hidden=True,
              help="The daemon this process runs a part for (HUB_APART): die with it.")
@click.pass_context
def run(ctx: click.Context, only: tuple[str, ...], without: tuple[str, ...],
        parent: int | None) -> None:
    """Run the daemon until SIGTERM/SIGINT."""
    from hub.daemon import run as run_daemon

    sys.exit(run_daemon(_settings(ctx), only, without, parent))


@cli.group()
def db() -> None:
    """The hub's own store."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply the store's migrations (the daemon also does this on start)."""
    from hub.store import Store

    store = Store(_settings(ctx).database)
    store.migrate()
    click.echo(f"hub store at revision {store.current_revision()}")


@cli.group()
def demo() -> None:
    """The reference systems the hub ships with."""


@demo.command("init")
@click.option("--seed", is_flag=True, help="Add sample customers, items, products, specs, lots.")
@click.pass_context
def demo_init(ctx: click.Context, seed: bool) -> None:
    """Create the CRM, ERP and LIMS schemas at the configured URLs, and the hub store's
    database (idempotent)."""
    from hub.demo.reference import init

    settings = _settings(ctx)
    init(settings, seed=seed)
    described = settings.describe()
    for system in ("crm", "erp", "lims"):
        click.echo(f"{system}: schema ready{' and seeded' if seed else ''} at {described[system]}")
    click.echo(f"hub store: database ready at {described['database']} (run migrates it)")


@demo.command("simulate")
@click.option("--rate", default=2.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True), help="Actions per second.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds to run [default: until Ctrl-C or SIGTERM].")
@click.option("--seed", type=int, default=None, metavar="N",
              help="Random seed, for a repeatable run.")
@click.option("--quiet", is_flag=True, help="Print only failures and the summary.")
@click.pass_context
def demo_simulate(ctx: click.Context, rate: float, duration: float | None, seed: int | None,
                  quiet: bool) -> None:
    """Act as the people using the CRM, ERP and LIMS (new orders, confirmations, deliveries,
    lot releases), one line per action, so that `hub run` and `hub status` show things move."""
    from hub.demo.simulate import run as run_simulation

    sys.exit(run_simulation(_settings(ctx), rate=rate, duration=duration, seed=seed,
                            quiet=quiet))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Each part's health, last poll and lag; queue depths; dead letters."""
    from hub.status import collect, render

    report = collect(_settings(ctx))
    click.echo(json.dumps(report, indent=2, default=str) if as_json else render(report))
    if not report["healthy"]:
        sys.exit(1)


@cli.command("trace")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a timeline.")
@click.option("--limit", default=500, show_default=True, type=click.IntRange(min=1),
              help="Show at most this many events (the newest).")
@click.pass_context
def trace_cmd(ctx: click.Context, key: str, as_json: bool, limit: int) -> None:
    """Everything that happened to an order number, ERP DocNum or batch number, across CRM,
    ERP and LIMS, in time order. Exit code 1 when nothing is known about KEY."""
    from hub.errors import HubError
    from hub.trace import render, trace_with_settings

    try:
        result = trace_with_settings(_settings(ctx), key, limit=limit)
    except HubError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False) if as_json
               else render(result))
    if not result.found:
        sys.exit(1)


@cli.group("dead-letters")
def dead_letters() -> None:
    """Messages that could not be applied, with why."""


@dead_letters.command("list")
@click.option("--status", "status_", default="dead", show_default=True,
              type=click.Choice(["dead", "replayed", "discarded", "all"]))
@click.option("--limit", default=50, show_default=True)
@click.pass_context
def dl_list(ctx: click.Context, status_: str, limit: int) -> None:
    """List dead letters, newest first."""
    from hub.store import Store
    from hub.store.deadletters import DeadLetters

    store = Store(_settings(ctx).database)
    with store.begin() as conn:
        letters = DeadLetters.list(conn, status=None if status_ == "all" else status_, limit=limit)
    if not letters:
        click.echo("no dead letters")
        return
    click.echo(f"{'ID':>6}  {'DEAD AT':19}  {'QUEUE':28}  {'KEY':20}  REASON")
    for d in letters:
        click.echo(f"{d.id:>6}  {d.dead_at:%Y-%m-%d %H:%M:%S}  {d.queue[:28]:28}  "
                   f"{(d.correlation_key or '-')[:20]:20}  {d.reason[:90]}")


@dead_letters.command("show")
@click.argument("letter_id", type=int)
@click.pass_context
def dl_show(ctx: click.Context, letter_id: int) -> None:
    """Show one dead letter: why it failed, the original message, and any edits of it."""
    from hub.replay import edits
    from hub.store import Store
    from hub.store.deadletters import DeadLetters

    store = Store(_settings(ctx).database)
    with store.begin() as conn:
        d = DeadLetters.get(conn, letter_id)
    if d is None:
        raise click.ClickException(f"no dead letter {letter_id}")
    fields: dict[str, Any] = {
        "id": d.id, "status": d.status, "queue": d.queue, "routing_key": d.routing_key,
        "message_id": d.message_id, "type": d.type, "key": d.correlation_key,
        "attempts": d.attempts, "dead_at": d.dead_at, "error_code": d.error_code,
        "reason": d.reason, "resolved_by": d.resolved_by, "note": d.note,
    }
    for name, value in fields.items():
        if value is not None:
            click.echo(f"{name:>12}: {value}")
    click.echo("     message:")
    try:
        click.echo(json.dumps(json.loads(d.body), indent=2, ensure_ascii=False))
    except ValueError:
        click.echo(repr(d.body))
    with store.begin() as conn:
        changed = edits(conn, d)
    for edit in changed:
        click.echo(f"      edited: {edit['at']:%Y-%m-%d %H:%M:%S} by {edit['by']}, sent back as:")
        for change in edit["changes"]:
            click.echo(f"              {change['path']}: {json.dumps(change['before'])} -> "
                       f"{json.dumps(change['after'])}")


@dead_letters.command("replay")
@click.argument("ids", type=int, nargs=-1, required=True)
@click.option("--by", default="cli", show_default=True, help="Who replays, for the journal.")
@click.pass_context
def dl_replay(ctx: click.Context, ids: tuple[int, ...], by: str) -> None:
    """Send dead letters back to the consumer that failed them."""
    from hub.replay import replay
    from hub.runtime import Runtime

    runtime = Runtime.open(_settings(ctx))
    try:
        outcomes = replay(runtime.store, runtime.bus, ids, by=by)
    finally:
        runtime.close()
    _print_outcomes(outcomes)


@dead_letters.command("edit")
@click.argument("letter_id", type=int)
@click.option("--set", "assignments", multiple=True, metavar="PATH=VALUE",
              help="Set one field, e.g. order.lines.0.product_code=ETAC-99 (repeatable); "
                   "VALUE is JSON or else text.")
@click.option("--body", "body_file", type=click.File("rb"), default=None,
              help="The whole new message from FILE ('-' for standard input).")
@click.option("--by", default="cli", show_default=True, help="Who edits, for the journal.")
@click.pass_context
def dl_edit(ctx: click.Context, letter_id: int, assignments: tuple[str, ...],
            body_file: Any, by: str) -> None:
    """Correct a dead letter's message and replay it. Without --set or --body the message
    opens in $EDITOR. The edit is validated against the message model first (nothing is
    changed otherwise); the journal keeps who changed what, the dead letter the original."""
    from hub.errors import InvalidMessage
    from hub.replay import assign, edit_and_replay
    from hub.runtime import Runtime
    from hub.store import Store
    from hub.store.deadletters import DeadLetters

    if assignments and body_file is not None:
        raise click.UsageError("give --set or --body, not both")
    with Store(_settings(ctx).database).begin() as conn:
        letter = DeadLetters.get(conn, letter_id)
    if letter is None:
        raise click.ClickException(f"no dead letter {letter_id}")
    if body_file is not None:
        body: bytes = body_file.read()
    elif assignments:
        try:
            body = assign(letter.body, assignments)
        except InvalidMessage as exc:
            raise click.ClickException(str(exc)) from exc
    else:
        try:
            text = json.dumps(json.loads(letter.body), indent=2, ensure_ascii=False)
        except ValueError:
            text = letter.body.decode("utf-8", "replace")
        edited = click.edit(text + "\n", extension=".json", require_save=True)
        if edited is None:
            raise click.ClickException("not saved: nothing changed")
        body = edited.encode("utf-8")
    runtime = Runtime.open(_settings(ctx))
    try:
        outcome = edit_and_replay(runtime.store, runtime.bus, letter_id, body, by=by)
    finally:
        runtime.close()
    for change in outcome.changes:
        click.echo(f"  {change['path']}: {json.dumps(change['before'], ensure_ascii=False)} -> "
                   f"{json.dumps(change['after'], ensure_ascii=False)}")
    _print_outcomes([outcome])


@dead_letters.command("discard")
@click.argument("ids", type=int, nargs=-1, required=True)
@click.option("--reason", required=True, help="Why it is discarded (kept in the journal).")
@click.option("--by", default="cli", show_default=True)
@click.pass_context
def dl_discard(ctx: click.Context, ids: tuple[int, ...], reason: str, by: str) -> None:
    """Mark dead letters discarded, with a reason."""
    from hub.replay import discard
    from hub.store import Store

    _print_outcomes(discard(Store(_settings(ctx).database), ids, by=by, note=reason))


def _print_outcomes(outcomes: list[Any]) -> None:
    for o in outcomes:
        click.echo(f"{o.id}: {'ok' if o.ok else 'FAILED'} - {o.detail}")
    if not all(o.ok for o in outcomes):
        sys.exit(1)


cli.add_command(token)
cli.add_command(certificate)


def main() -> None:
    from hub.errors import HubError

    try:
        cli(prog_name="hub")
    except HubError as exc:  # an unreachable database or broker: its reason, no traceback
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
