"""``featcli top``'s answer as JSON records, and the merge of shards' records into one answer.

A search (:func:`featcli.run.top.find_top`) is written as its ``failed`` records (input order), one record per
channel with its top entries, and one ``summary`` record with each channel's health and the exact sums a merge
needs (``count``, ``sum_exact`` as ``numerator/denominator``, ``zeros``, ``max``, ``min``). :func:`merge_parts`
reads the records of ``--shard`` runs back and merges them by the search's own key (value, then input index,
then position), so the merge of all shards is, byte for byte, the records of one unsharded run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

from featcli.errors import FeatcliError, UsageError
from featcli.run.top import ChannelTop, TopResult

__all__ = ["merge_parts", "records"]


def records(res: TopResult) -> list[dict[str, Any]]:
    """The JSON records of ``res``: failed inputs, one per channel, then the summary (documented in
    docs/top.md)."""
    out: list[dict[str, Any]] = list(res.failed)
    for ch in res.channels:
        out.append({"channel": ch.channel, "label": ch.label, "stage": res.stage, "top": ch.entries})
    out.append({"summary": {
        "stage": res.stage, "spec": res.spec, "k": res.k, "images": res.images, "failed": len(res.failed),
        "fields": res.has_fields, "layer": res.layer,
        "channels": [{"channel": ch.channel, "label": ch.label, "count": ch.count, "mean": ch.mean,
                      "zero_share": ch.zeros / ch.count if ch.count else 0.0, "max": ch.max, "min": ch.min,
                      "dead": ch.dead, "zeros": ch.zeros,
                      "sum_exact": f"{ch.total.numerator}/{ch.total.denominator}"} for ch in res.channels]}})
    return out


def _key(entry: dict[str, Any]) -> tuple[float, int, int, int]:
    return (-entry["value"], entry["index"], entry["y"], entry["x"])


def merge_parts(paths: Sequence[str]) -> TopResult:
    """The one answer of the ``--jsonl`` outputs of ``featcli top --shard I/N`` runs (any order)."""
    if not paths:
        raise UsageError("--merge needs the JSONL outputs of featcli top --shard runs")
    parts = [_read(p) for p in paths]
    return merge_results(parts, paths)


def merge_results(parts: Sequence[TopResult], names: Sequence[str] = ()) -> TopResult:
    """Merge answers of disjoint parts of one run (same stage, K and channels)."""
    live = [p for p in parts if p.channels]
    failed = sorted((f for p in parts for f in p.failed), key=lambda f: f["index"])
    if not live:
        first = parts[0]
        return TopResult(first.stage, first.spec, first.k, 0, [], failed, first.has_fields, layer=first.layer)
    first = live[0]
    for p, name in zip(live[1:], list(names)[1:] or [""] * len(live), strict=False):
        if (p.stage, p.spec, p.k, len(p.channels)) != (first.stage, first.spec, first.k, len(first.channels)):
            raise FeatcliError(f"{name or 'a part'}: stage {p.stage} ({p.spec}), --top {p.k}, {len(p.channels)} "
                             f"channels; the first part has stage {first.stage} ({first.spec}), --top {first.k}, "
                             f"{len(first.channels)} channels: not parts of one run")
    channels = []
    for c, chs in enumerate(zip(*(p.channels for p in live), strict=True)):
        entries = sorted((e for ch in chs for e in ch.entries), key=_key)[: first.k]
        channels.append(ChannelTop(c, chs[0].label, entries, sum(ch.count for ch in chs),
                                   sum((ch.total for ch in chs), Fraction(0)), sum(ch.zeros for ch in chs),
                                   max(ch.max for ch in chs), min(ch.min for ch in chs)))
    images = sum(p.images for p in parts)
    return TopResult(first.stage, first.spec, first.k, images, channels, failed, first.has_fields, layer=first.layer)


def _read(path: str) -> TopResult:
    try:
        with open(path, encoding="utf-8") as f:
            return from_records((json.loads(line) for line in f if line.strip()), path)
    except OSError as exc:
        raise FeatcliError(f"cannot read it: {exc.strerror or exc}", path=path) from None
    except json.JSONDecodeError as exc:
        raise FeatcliError(f"not JSON lines of featcli top --jsonl (line {exc.lineno}: {exc.msg})",
                           path=path) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FeatcliError(f"not the records of featcli top --jsonl ({type(exc).__name__}: {exc})",
                           path=path) from None


def from_records(recs: Iterable[dict[str, Any]], name: str = "") -> TopResult:
    """An answer back from its :func:`records`."""
    failed, tops, summary = [], {}, None
    for rec in recs:
        if "summary" in rec:
            summary = rec["summary"]
        elif rec.get("status") == "failed":
            failed.append(rec)
        elif "channel" in rec:
            tops[rec["channel"]] = rec["top"]
    if summary is None:
        raise FeatcliError("no summary record: not the complete --jsonl output of featcli top", path=name)
    channels = []
    for h in summary["channels"]:
        num, _, den = h["sum_exact"].partition("/")
        channels.append(ChannelTop(h["channel"], h["label"], tops.get(h["channel"], []), h["count"],
                                   Fraction(int(num), int(den)), h["zeros"], h["max"], h["min"]))
    return TopResult(summary["stage"], summary["spec"], summary["k"], summary["images"], channels, failed,
                     summary["fields"], layer=summary.get("layer"))
