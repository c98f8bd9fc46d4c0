"""`bot import-customers FILE`: the bank's export into customer profiles, then re-tagging."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from bot.config import Settings
from bot.store.db import Database
from bot.tagging.import_report import ImportReport
from bot.tagging.rules import AUM_TREND_DAYS

EXIT_REFUSED = 1
EXIT_UNUSABLE = 2

HELP = "\n\n".join(
    [
        "Import the bank's customer export (CSV in UTF-8 or GBK, or XLSX) into customer "
        "profiles. Columns are mapped by `import.columns` in config.yaml. Rows are matched to "
        "WeCom customers by external_userid, else by the mobile managers entered as a remark "
        "mobile; unmatched rows are stored and reported. Rows of customers erased with "
        "`bot forget` store nothing and are counted as forgotten.",
        "Policy, one transaction per import: a file that cannot be read, is neither UTF-8 nor "
        "GBK, or lacks the customer-key column or both match columns writes nothing (exit 2). "
        "Bad rows (bad numbers or dates, missing or duplicate keys) go to the reject file; if "
        "they are at most --max-reject-ratio of the rows the good rows are imported (exit 0), "
        "otherwise nothing is written (exit 1). --dry-run does the same checks and writes "
        "nothing but the reject file.",
    ]
)


def register(app: typer.Typer) -> None:
    """Add `import-customers` to `app`."""
    app.command("import-customers", help=HELP)(import_customers_command)


def import_customers_command(
    file: Annotated[Path, typer.Argument(help="the export: .csv or .xlsx")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="config.yaml to use (default: $BOT_CONFIG or ./config.yaml)"
        ),
    ] = None,
    reject_file: Annotated[
        Path | None,
        typer.Option("--reject-file", help="where rejected rows go (default: FILE.rejects.csv)"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="check and report, write nothing to the store")
    ] = False,
    max_reject_ratio: Annotated[
        float,
        typer.Option(
            "--max-reject-ratio",
            min=0.0,
            max=1.0,
            help="largest share of bad rows that still imports the good ones",
        ),
    ] = 0.01,
) -> None:
    # bot.cli imports this module while it is being built, so its helpers come in late.
    from bot.cli import _database, _require_migrated, _settings, console, err
    from bot.clock import SystemClock
    from bot.tagging.importer import ImportFileError, import_customers

    settings = _settings(config)
    db = _database(settings)
    try:
        _require_migrated(db)
        now = SystemClock(ZoneInfo(settings.timezone)).now()
        try:
            report = import_customers(
                db,
                file,
                settings=settings,
                now=now,
                reject_path=reject_file,
                dry_run=dry_run,
                max_reject_ratio=max_reject_ratio,
                progress=err.is_terminal,
            )
        except ImportFileError as exc:
            err.print(f"[red]cannot import[/red] {exc}", highlight=False, soft_wrap=True)
            err.print("nothing was written")
            raise typer.Exit(EXIT_UNUSABLE) from None
        print_report(console, report)
        if report.refused:
            err.print(
                f"[red]refused[/red]: {report.refused_reason}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(EXIT_REFUSED)
        if not dry_run:
            _retag(console, db, report, settings=settings, now=now)
    finally:
        db.dispose()


# Where the tag rules' incremental run lives; the first module offering it is used.
RETAG_PROVIDERS = ("bot.tagging.engine", "bot.tagging.rules")


def _retag(
    console: Console, db: Database, report: ImportReport, *, settings: Settings, now: datetime
) -> None:
    """Re-evaluate tag rules for the customers whose bank data or link changed."""
    changed = report.changed_external_userids
    if not changed:
        return
    retag = _find_retag()
    if retag is None:
        console.print(
            f"note: tag rules are not wired to imports yet; {len(changed)} customer(s) "
            "changed, run `bot retag`",
            soft_wrap=True,
        )
        return
    result = retag(db, changed, settings=settings, now=now)
    evaluated = getattr(result, "evaluated", len(changed))
    retagged = getattr(result, "changes", None)
    suffix = f", {len(retagged)} with changed tags" if retagged is not None else ""
    console.print(f"re-tagged {evaluated} changed customer(s){suffix}")


def _find_retag() -> Callable[..., Any] | None:
    for name in RETAG_PROVIDERS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        retag = getattr(module, "retag_customers", None)
        if callable(retag):
            return retag  # type: ignore[no-any-return]
    return None


def print_report(console: Console, report: ImportReport) -> None:
    """Counts, masked samples and the reject file; never a name or an unmasked mobile."""
    title = {
        "imported": f"imported {report.file.name} (run {report.import_id})",
        "dry-run": f"dry run of {report.file.name}: nothing written",
        "refused": f"refused {report.file.name}: nothing written",
    }[report.status]
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("rows", justify="right")
    fmt = report.encoding.upper() if report.encoding else "XLSX"
    counts: list[tuple[str, int | str]] = [
        ("format", fmt),
        ("data rows", report.rows),
        ("rejected", report.rejected),
        ("new profiles", report.inserted),
        ("updated", report.updated),
        ("unchanged", report.unchanged),
        ("attribute changes", report.history_rows),
        (f"AUM history older than {AUM_TREND_DAYS} days, removed", report.aum_history_expired),
        ("matched by external_userid", report.matched_by_id),
        ("matched by mobile", report.matched_by_mobile),
        ("kept earlier match", report.kept_match),
        ("ambiguous mobile", report.ambiguous),
        ("customer linked to another key", report.conflicts),
        ("unmatched (stored)", report.unmatched),
        ("forgotten customers (nothing stored)", report.forgotten),
        ("customers to re-tag", len(report.changed_external_userids)),
    ]
    for label, value in counts:
        table.add_row(label, f"{value:,}" if isinstance(value, int) else value)
    console.print(table)
    if report.columns_not_in_file:
        console.print(
            "columns not in the file (left as they were): " + ", ".join(report.columns_not_in_file),
            soft_wrap=True,
        )
    if report.ignored_columns:
        console.print("columns ignored: " + ", ".join(report.ignored_columns), soft_wrap=True)
    if report.unmatched_samples:
        samples = Table(title="not linked (masked sample)", title_justify="left")
        for name in ("line", "customer key", "mobile", "why"):
            samples.add_column(name)
        for sample in report.unmatched_samples:
            samples.add_row(str(sample.line), sample.customer_key, sample.mobile, sample.reason)
        console.print(samples)
    if report.reject_samples:
        console.print(f"rejected rows (first {len(report.reject_samples)}):")
        for line, error in report.reject_samples:
            console.print(f"  line {line}: {error}", highlight=False, soft_wrap=True)
    if report.reject_path is not None:
        console.print(f"rejected rows written to {report.reject_path}", soft_wrap=True)
