"""Reading argparse's rendered `--help`: each option with the metavar and help text it shows."""

from __future__ import annotations

import re

_ENTRY = re.compile(r"^  (-\S.*?)(?:\s{2,}(\S.*))?$")


def help_entries(text: str) -> dict[str, tuple[str, str]]:
    """`--flag` -> (the metavar shown, "" for a switch; its help text, wrapped lines joined) of
    every option in a `--help` text (a switch's `--no-flag` alias too)."""
    entries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = _ENTRY.match(line)
        if match:
            invocation, first = match.groups()
            forms = [form.partition(" ") for form in invocation.split(", ")]
            current = [forms[0][2], first or ""]
            entries.update({flag: current for flag, _, _ in forms})
        elif current is not None and line.startswith("      ") and line.strip():
            current[1] = f"{current[1]} {line.strip()}".strip()
        else:
            current = None
    return {flag: (metavar, text) for flag, (metavar, text) in entries.items()}
