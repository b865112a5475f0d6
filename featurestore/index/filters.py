"""``--where`` filters on kept columns: comparisons only, evaluated by DuckDB with no external access.

The expression is checked token by token before DuckDB sees it: column names (of the view's kept
columns), string and number literals, comparison operators, AND / OR / NOT, IN, IS [NOT] NULL,
LIKE / ILIKE, BETWEEN and parentheses. Anything else (a function call, a sub-query, a file
read) is refused with the allowed forms; DuckDB runs with ``enable_external_access = false``
as a second wall.
"""

from __future__ import annotations

import difflib
import re

import numpy as np
import pyarrow as pa

from featurestore.errors import StoreError

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<quoted>"(?:[^"]|"")+")
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op><>|!=|<=|>=|=|<|>|\(|\)|,)
      | (?P<bad>.)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "is", "null", "like", "ilike", "between", "true", "false"}
ALLOWED = "column = 'value', <, <=, >, >=, <>, AND, OR, NOT, IN ('a', 'b'), IS [NOT] NULL, LIKE 'x%', BETWEEN a AND b"


def check_filter(expression: str, columns: list[str]) -> str:
    """The expression with column names quoted for DuckDB; a StoreError naming what is wrong otherwise."""
    if not expression or not expression.strip():
        raise StoreError(f"the filter is empty; write a comparison such as label = 'spam' (allowed: {ALLOWED})")
    out: list[str] = []
    tokens = list(_TOKEN.finditer(expression))
    for i, match in enumerate(tokens):
        kind, text = match.lastgroup, match.group(match.lastgroup)
        if kind == "bad":
            raise StoreError(f"filter {expression!r}: {text!r} is not allowed; filters only compare columns ({ALLOWED})")
        if kind in ("word", "quoted"):
            name = text[1:-1].replace('""', '"') if kind == "quoted" else text
            following = tokens[i + 1].group(tokens[i + 1].lastgroup) if i + 1 < len(tokens) else ""
            if kind == "word" and name.lower() in _KEYWORDS:
                out.append(name.upper())
                continue
            if following == "(":
                raise StoreError(f"filter {expression!r}: function calls such as {name}(...) are not allowed; filters only compare columns ({ALLOWED})")
            if name not in columns:
                close = difflib.get_close_matches(name, columns, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise StoreError(f"filter {expression!r}: no column {name!r}; the view's columns are: {', '.join(columns) or 'none'}.{hint}")
            out.append('"' + name.replace('"', '""') + '"')
        else:
            out.append(text)
    return " ".join(out)


def matching_rows(columns: pa.Table, expression: str) -> np.ndarray:
    """Row positions of ``columns`` where the expression holds: ``(n_matches,) int64``."""
    import duckdb

    sql_expr = check_filter(expression, columns.column_names)
    con = duckdb.connect(config={"enable_external_access": False})
    try:
        frame = columns.append_column("__row", pa.array(np.arange(columns.num_rows, dtype=np.int64)))
        con.register("frame", frame)
        result = con.execute(f"SELECT __row FROM frame WHERE {sql_expr}").fetchnumpy()["__row"]
    except duckdb.Error as exc:
        raise StoreError(f"filter {expression!r} cannot be evaluated: {str(exc).splitlines()[0]} (allowed: {ALLOWED})") from None
    finally:
        con.close()
    return np.asarray(result, dtype=np.int64)
