"""What an import did (or would do), with personal data masked so it can be printed and logged."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bot.privacy import mask_mobile

SAMPLE_LIMIT = 10


def mask_key(value: str) -> str:
    """C0****89: enough of a bank customer key to recognise it, not to look it up."""
    if len(value) <= 4:
        return "*" * len(value)
    return f"{value[:2]}{'*' * (len(value) - 4)}{value[-2:]}"


@dataclass(frozen=True)
class RowSample:
    """A stored row that is not linked to a WeCom customer, masked for display."""

    line: int
    customer_key: str
    mobile: str
    reason: str

    @classmethod
    def of(cls, line: int, key: str, mobile: str | None, reason: str) -> RowSample:
        return cls(line, mask_key(key), mask_mobile(mobile) if mobile else "", reason)


@dataclass
class ImportReport:
    """Counts of one run of `import_customers`; `changed_external_userids` are the WeCom
    customers whose bank data or link changed, for the tag rules to re-evaluate."""

    file: Path
    sha256: str
    kind: str
    encoding: str | None
    dry_run: bool
    max_reject_ratio: float
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    matched_by_id: int = 0
    matched_by_mobile: int = 0
    kept_match: int = 0
    ambiguous: int = 0
    conflicts: int = 0
    unmatched: int = 0
    rejected: int = 0
    history_rows: int = 0
    # Rows naming a customer `bot forget` erased: nothing of theirs was stored or rejected.
    forgotten: int = 0
    # Raw AUM history rows older than the trend window, deleted by this import.
    aum_history_expired: int = 0
    linked: int = 0
    changed_external_userids: set[str] = field(default_factory=set)
    unmatched_samples: list[RowSample] = field(default_factory=list)
    reject_samples: list[tuple[int, str]] = field(default_factory=list)
    reject_path: Path | None = None
    import_id: int | None = None
    refused_reason: str | None = None
    columns_not_in_file: tuple[str, ...] = ()
    ignored_columns: tuple[str, ...] = ()

    @property
    def status(self) -> Literal["imported", "refused", "dry-run"]:
        if self.refused_reason is not None:
            return "refused"
        return "dry-run" if self.dry_run else "imported"

    @property
    def refused(self) -> bool:
        return self.refused_reason is not None

    @property
    def valid(self) -> int:
        return self.rows - self.rejected

    @property
    def changed(self) -> int:
        return self.inserted + self.updated

    @property
    def reject_ratio(self) -> float:
        return self.rejected / self.rows if self.rows else 0.0

    def sample(self, line: int, key: str, mobile: str | None, reason: str) -> None:
        if len(self.unmatched_samples) < SAMPLE_LIMIT:
            self.unmatched_samples.append(RowSample.of(line, key, mobile, reason))

    def summary(self) -> str:
        """One line for logs: counts only, no personal data."""
        return (
            f"{self.status} {self.file.name} sha256={self.sha256[:12]}: rows={self.rows} "
            f"inserted={self.inserted} updated={self.updated} unchanged={self.unchanged} "
            f"by_id={self.matched_by_id} by_mobile={self.matched_by_mobile} "
            f"kept={self.kept_match} ambiguous={self.ambiguous} conflicts={self.conflicts} "
            f"unmatched={self.unmatched} forgotten={self.forgotten} rejected={self.rejected} "
            f"history={self.history_rows} aum_history_expired={self.aum_history_expired}"
        )
