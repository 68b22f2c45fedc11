"""Reading the fixed-width tables the benchmarks and the fault scenarios print (bench/_common.py print_rows)."""

from __future__ import annotations


def table_rows(stdout: str, title: str, header: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The rows of the last table whose title starts with `title`: the header, a rule of dashes, then rows up to
    the first blank line. Columns are cut where the rule's gaps are, so cells may hold spaces."""
    lines = stdout.split(f"\n{title}")[-1].splitlines()
    assert tuple(lines[1].split()) == header, lines[:3]
    rule = lines[2]
    starts = [0] + [i + 2 for i in range(len(rule) - 1) if rule[i : i + 2] == "  " and rule[i + 2 : i + 3] == "-"]
    assert len(starts) == len(header), rule
    rows = []
    for line in lines[3:]:
        if not line.strip():
            break
        rows.append(tuple(line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)))
    return rows
