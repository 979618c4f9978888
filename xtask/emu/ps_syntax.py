"""PowerShell syntax check of the VM deploy plans' scripts, with tree-sitter's PowerShell grammar.

`cargo xtask test` (stage 7, `deploy::syntax`) writes every script the plans can produce into a
folder, one `.ps1` file each, and runs:

    python ps_syntax.py FOLDER

Each file is parsed; a file whose tree holds an ERROR or a MISSING node fails, named with the line
and column of the first such node and the text there. Output: one line per file,
`ok NAME` or `error NAME LINE:COL: what`, then exit status 0 if every file parsed, 1 if one did not,
2 if the folder holds no script or the grammar cannot be loaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import tree_sitter
import tree_sitter_powershell


def first_error(node: tree_sitter.Node) -> tree_sitter.Node | None:
    """The first ERROR or MISSING node under `node`, in document order."""
    if node.is_error or node.is_missing:
        return node
    if not node.has_error:
        return None
    for child in node.children:
        found = first_error(child)
        if found is not None:
            return found
    return node


def check(parser: tree_sitter.Parser, source: bytes) -> str | None:
    """None if `source` parses, else `LINE:COL: what` of the first error."""
    tree = parser.parse(source)
    bad = first_error(tree.root_node)
    if bad is None:
        return None
    line, col = bad.start_point
    text = source[bad.start_byte : bad.end_byte][:60].decode("utf-8", "replace")
    kind = f"missing {bad.type}" if bad.is_missing else "syntax error"
    return f"{line + 1}:{col + 1}: {kind} at `{text}`"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: ps_syntax.py FOLDER", file=sys.stderr)
        return 2
    files = sorted(Path(argv[1]).glob("*.ps1"))
    if not files:
        print(f"no .ps1 file in {argv[1]}", file=sys.stderr)
        return 2
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
    failed = 0
    for f in files:
        error = check(parser, f.read_bytes())
        if error is None:
            print(f"ok {f.name}")
        else:
            failed += 1
            print(f"error {f.name} {error}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
