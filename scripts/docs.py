"""The reference tables of docs/reference.md, generated from the lists in the code.

    python -m scripts.docs          # rewrite the tables in docs/reference.md
    python -m scripts.docs --check  # exit 1 if docs/reference.md differs (the tests run this)

Each table sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``:
settings (adcrawler.config.SETTINGS), the tables (adcrawler.store.migrations.DOCS),
stats (adcrawler.stats), request meta
keys (adcrawler.retry), metrics (adcrawler.extensions.metrics.METRICS) and the
simulator's faults (mock_api.config).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from adcrawler.config import SETTINGS
from adcrawler.extensions.metrics import METRICS
from adcrawler.retry import PUBLIC
from adcrawler.stats import COUNTERS, FINAL
from adcrawler.store.migrations import DOCS
from mock_api.config import DEFAULT_FAULTS, ENDPOINTS, FAULTS

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference.md"
SHOWN = "docs/reference.md"  # the path as messages name it


def settings_table() -> str:
    rows = ["| name | default | form | meaning |", "| --- | --- | --- | --- |"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "empty"
        rows.append(f"| `{s.name}` | {default} | {s.kind.form} | {s.doc} |")
    return "\n".join(rows)


def stats_table() -> str:
    rows = ["| key | kind | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{name}` | counter | {doc} |" for name, doc in COUNTERS.items()]
    rows += [f"| `{name}` | value | {doc} |" for name, doc in FINAL.items()]
    return "\n".join(rows)


def schema_table() -> str:
    rows = ["| table | column | what it holds |", "| --- | --- | --- |"]
    for table, (doc, columns) in DOCS.items():
        rows.append(f"| `{table}` | | {doc} |")
        rows += [f"| | `{column}` | {text} |" for column, text in columns.items()]
    return "\n".join(rows)


def meta_table() -> str:
    rows = ["| key | meaning |", "| --- | --- |"]
    rows += [f"| `{name}` | {doc} |" for name, doc in PUBLIC.items()]
    return "\n".join(rows)


def metrics_table() -> str:
    rows = ["| metric | type | labels besides `client` and `slug` | meaning |", "| --- | --- | --- | --- |"]
    for m in METRICS:
        name = f"{m.name}_total" if m.kind == "counter" else m.name
        labels = {"status": "`endpoint`, `status`", "": "—"}.get(m.label, f"`{m.label}`")
        if m.values:
            labels += f" ({', '.join(m.values)})"
        rows.append(f"| `{name}` | {m.kind} | {labels} | {m.doc} |")
    return "\n".join(rows)


def faults_table() -> str:
    what = {"503": "503 JSON", "429": "429 with `Retry-After` and `retry_after`",
            "401": "401: good credentials refused (auth) / the token revoked (list, sync)",
            "garbage": "200 with an HTML body", "reset": "connection dropped, no answer",
            "hang": "no answer for `--hang-seconds`"}
    rows = ["| fault | flag | " + " | ".join(f"{e}: default" for e in ENDPOINTS) + " |",
            "| --- | --- | " + " | ".join("---" for _ in ENDPOINTS) + " |"]
    for fault in FAULTS:
        rates = " | ".join(f"{DEFAULT_FAULTS.get(f'{e}_{fault}', 0):g}" for e in ENDPOINTS)
        rows.append(f"| {what[fault]} | `--<endpoint>-{fault}-rate` | {rates} |")
    return "\n".join(rows)


TABLES = {"settings": settings_table, "schema": schema_table, "stats": stats_table, "meta": meta_table,
          "metrics": metrics_table, "faults": faults_table}


def render(text: str) -> str:
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(\n<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{SHOWN} has no {name} table markers")
        table = make()
        text = pattern.sub(lambda m, table=table: m.group(1) + table + m.group(2), text)
    return text


def main(argv: list[str]) -> int:
    current = REFERENCE.read_text(encoding="utf-8")
    wanted = render(current)
    if "--check" in argv:
        if wanted != current:
            print(f"{SHOWN} tables differ from the code: run python -m scripts.docs", file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
