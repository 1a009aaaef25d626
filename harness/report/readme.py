"""The generated blocks of the README and docs/: every `<!-- attnbench:table files=... -->` ...
`<!-- /attnbench:table -->` block is rendered again from the CSVs it names (`run.py readme`, `table --readme`)."""

from __future__ import annotations

import re
from pathlib import Path

from .tables import (
    best_by_class,
    pivot,
    render_best_markdown,
    render_markdown,
    render_winners_markdown,
    winners,
)

BLOCK = re.compile(
    r"(?P<open><!-- attnbench:table (?P<params>[^>]*?) -->\n)(?P<body>.*?)(?P<close><!-- /attnbench:table -->)",
    re.DOTALL,
)


def _block_params(text: str) -> dict[str, str]:
    params = {}
    for token in text.split():
        if "=" not in token:
            raise ValueError(
                f"README table marker: {token!r} is not key=value (keys: files, metric, model, workload, backend, page,"
                " view)"
            )
        key, value = token.split("=", 1)
        if key in params:
            raise ValueError(f"README table marker: {key!r} given twice")
        if key not in ("files", "metric", "model", "workload", "backend", "page", "view"):
            raise ValueError(
                f"README table marker: {key!r} is not valid; expected one of files, metric, model, workload, backend,"
                " page, view"
            )
        sizes = value.split(",")
        if key == "page" and not all(v == "dense" or v.isascii() and v.isdigit() and int(v) > 0 for v in sizes):
            raise ValueError(f"README table marker: page={value!r} is not valid; expected dense or page sizes, e.g. "
                             "page=dense,16")  # fmt: skip
        params[key] = value
    if "files" not in params:
        raise ValueError("README table marker: needs files=results/<gpu>.csv[,more.csv]")
    return params


def rewrite_readme(text: str, base_dir: Path, load) -> tuple[str, int]:
    """Regenerate every `<!-- attnbench:table files=… metric=… -->` … `<!-- /attnbench:table -->`
    block from the CSVs it names; nothing outside the blocks changes. Returns (text, blocks)."""
    count = 0

    def render(match: re.Match) -> str:
        nonlocal count
        params = _block_params(match.group("params"))
        rows = load([base_dir / f for f in params["files"].split(",")])
        for field in ("model", "workload", "backend"):
            if field in params:
                wanted = set(params[field].split(","))
                rows = [r for r in rows if getattr(r, field) in wanted]
        if "page" in params:  # dense (no pages) or page sizes
            pages = {None if v == "dense" else int(v) for v in params["page"].split(",")}
            rows = [r for r in rows if (None if r.page_size is None or r.page_size != r.page_size else int(r.page_size))
                    in pages]  # fmt: skip
        view = params.get("view", "pivot")
        if view == "winners":
            table = render_winners_markdown(winners(rows))
        elif view == "best":
            table = render_best_markdown(best_by_class(rows))
        elif view == "pivot":
            table = render_markdown(pivot(rows, params.get("metric", "p50_ms")))
        elif view == "verdict":  # how often each library (its best variant a batch) is within 5% of the best
            from .verdict import render_verdict_markdown, verdict

            table = render_verdict_markdown(verdict(rows))
        elif view == "steps":  # a model's attention a forward step, summed over its layer kinds (complete ones)
            from .model_step import model_steps, render_model_steps

            steps = model_steps(rows)
            table = render_model_steps(steps[steps["missing"] == ""])
        else:
            raise ValueError(
                f"README table marker: view={view!r} is not valid; expected pivot, winners, best, verdict or steps"
            )
        count += 1
        return f"{match.group('open')}{table}\n{match.group('close')}"

    return BLOCK.sub(render, text), count


def generated_files(root: Path) -> list[Path]:
    """The Markdown files whose attnbench:table blocks come from the committed CSVs: the README and docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def rewrite_files(paths, load) -> list[tuple[Path, int, str, str]]:
    """(path, blocks, old text, new text) for every file of `paths` that holds a block (rewrite_readme on each;
    paths of the blocks are relative to their file)."""
    out = []
    for path in map(Path, paths):
        text = path.read_text()
        if "<!-- attnbench:table" not in text:
            continue
        new, blocks = _rewritten(path, text, load)
        out.append((path, blocks, text, new))
    return out


def _rewritten(path: Path, text: str, load) -> tuple[str, int]:
    """rewrite_readme on one file's text, a bad marker's line naming the file."""
    try:
        return rewrite_readme(text, path.resolve().parent, load)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def load_labelled(paths):
    """The rows of a block's CSVs, a variant's rows named backend[variant]."""
    from ..store import labelled, load_many

    return labelled(load_many(paths))


def rewrite_one(readme: Path, console) -> None:
    """`run.py table --readme FILE`: every block of one Markdown file rewritten in place."""
    if not readme.exists():
        raise ValueError(f"readme: {readme} does not exist")
    text = readme.read_text()
    new, blocks = _rewritten(readme, text, load_labelled)
    if blocks == 0:
        raise ValueError(f"readme: {readme} has no <!-- attnbench:table files=... --> block")
    if new != text:
        from ..atomic import write_atomic

        write_atomic(readme, new)
    console.print(
        f"{readme}: {blocks} table block(s) {'rewritten' if new != text else 'already up to date'}", soft_wrap=True
    )


def rewrite_all(paths, check: bool, console) -> int:
    """`run.py readme`: the blocks of `paths` rewritten (with `check`: only compared), a line a file that holds
    blocks and one line of how many blocks in which files (also when there are none); 1 if `check` finds one that
    differs from its CSVs."""
    paths = list(paths)
    found = rewrite_files(paths, load_labelled)
    for path, blocks, old, new in found:
        if not check and old != new:
            from ..atomic import write_atomic

            write_atomic(path, new)
        state = ("differs" if check else "rewritten") if old != new else "up to date"
        console.print(f"{path}: {blocks} block(s) {state}", soft_wrap=True)
    verb = "checked" if check else "regenerated"
    if found:
        names = ", ".join(str(path) for path, *_ in found)
        total = sum(blocks for _, blocks, _, _ in found)
        summary = f"{verb} {total} block(s) in {len(found)} file(s): {names}"
    else:
        summary = f"{verb} 0 blocks: no <!-- attnbench:table ... --> block in {', '.join(map(str, paths))}"
    console.print(summary, soft_wrap=True, markup=False, highlight=False)
    return 1 if check and any(old != new for _, _, old, new in found) else 0
