"""Which WeCom customer a bank row belongs to: by external_userid, else by remark mobile."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import Literal

from sqlalchemy import Connection, Text, cast, select

from bot.store.models import FollowRelation
from bot.tagging.fields import normalise_mobile

# "conflict" is decided later, against the links already stored.
Outcome = Literal["id", "mobile", "ambiguous", "conflict", "unmatched"]


class MobileIndex:
    """Normalised remark mobiles on active follow relations → the customers they name.

    One customer followed by several managers counts once; a number entered for two
    different customers is ambiguous and never guessed.
    """

    def __init__(self) -> None:
        self._unique: dict[str, str] = {}
        self._shared: dict[str, set[str]] = {}

    def add(self, mobile: str, external_userid: str) -> None:
        shared = self._shared.get(mobile)
        if shared is not None:
            shared.add(external_userid)
            return
        current = self._unique.setdefault(mobile, external_userid)
        if current != external_userid:
            del self._unique[mobile]
            self._shared[mobile] = {current, external_userid}

    def lookup(self, mobile: str) -> tuple[str, ...]:
        one = self._unique.get(mobile)
        if one is not None:
            return (one,)
        return tuple(sorted(self._shared.get(mobile, ())))

    def __len__(self) -> int:
        return len(self._unique) + len(self._shared)

    @classmethod
    def load(cls, conn: Connection) -> MobileIndex:
        """Read every active relation's remark mobiles (streamed, two columns)."""
        index = cls()
        # Most relations have no remark mobile; skip those in SQL rather than decode them.
        # The JSON is read as text and decoded here: the JSON type's result processing
        # cost more than the rest of the load.
        mobiles_text = cast(FollowRelation.remark_mobiles, Text)
        stmt = (
            select(FollowRelation.external_userid, mobiles_text)
            .where(
                FollowRelation.status == "active",
                mobiles_text.is_not(None),
                mobiles_text.not_in(["[]", "null"]),
            )
            .execution_options(yield_per=10_000)
        )
        result = conn.execute(stmt)
        for external_userid, text in result:
            mobiles = json.loads(text)
            if not isinstance(mobiles, list):
                continue
            for raw in mobiles:
                mobile = normalise_mobile(raw) if isinstance(raw, str) else None
                if mobile is not None:
                    index.add(mobile, external_userid)
        return index


def candidates(
    rows: Iterable[tuple[str | None, str | None]],
    known_ids: Collection[str],
    mobiles: MobileIndex | None,
) -> list[tuple[Outcome, str | None]]:
    """For each (external_userid, mobile): how it matched and to whom (None if it did not)."""
    out: list[tuple[Outcome, str | None]] = []
    for external_userid, mobile in rows:
        if external_userid is not None and external_userid in known_ids:
            out.append(("id", external_userid))
            continue
        hits = mobiles.lookup(mobile) if mobiles is not None and mobile is not None else ()
        if len(hits) == 1:
            out.append(("mobile", hits[0]))
        elif hits:
            out.append(("ambiguous", None))
        else:
            out.append(("unmatched", None))
    return out
