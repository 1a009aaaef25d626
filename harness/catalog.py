"""What `run.py list` shows, as data: every backend with its availability (and why not), version,
declared capabilities and variants; `run.py list --json` prints it as it is."""

from __future__ import annotations

from frameworks import BACKENDS, load_all


def backend_catalog(device, names: list[str] | None = None) -> list[dict]:
    """One dict a backend (all, or those named), in name order: name, available, reason, version,
    upstream, capabilities (the `list` table's cells) and variants (key, values, default, contenders,
    help). A variant's contenders are the values a default sweep also measures."""
    load_all()
    out = []
    for name in sorted(names or BACKENDS):
        cls = BACKENDS[name]
        backend = cls()
        reason = backend.availability(device)
        out.append(
            {
                "name": name,
                "available": reason is None,
                "reason": reason or "",
                "version": "" if reason else backend.version(),
                "upstream": cls.upstream,
                "capabilities": cls.capability_cells(),
                "variants": [
                    {
                        "key": key.name,
                        "values": list(key.allowed()),
                        "default": key.default,
                        "contenders": list(key.contenders),
                        "help": key.help,
                    }
                    for key in cls.variants
                ],
                "combinations": list(cls.contender_combinations),
            }
        )
    return out


def catalog_tables(catalog: list[dict], device_type: str, with_models_and_presets: bool = True) -> list:
    """`run.py list`'s Rich tables: backends (available or why not), their capabilities and variants, and then
    the models and presets. Every cell is text, never markup."""
    from rich.markup import escape
    from rich.table import Table

    from specs import MODELS, PRESETS

    backends = Table(title=f"backends on {device_type}")
    for col in ("backend", "available", "version / reason", "kernel"):
        backends.add_column(col)
    for b in catalog:
        backends.add_row(b["name"], "[red]no[/]" if b["reason"] else "[green]yes[/]",
                         escape(b["reason"] or b["version"]), escape(b["upstream"]))  # fmt: skip
    caps = Table(title="capabilities (declared; the library may still decline a spec at run time)")
    for col in ("backend", *(list(catalog[0]["capabilities"]) if catalog else [])):
        caps.add_column(col, no_wrap=col == "backend", overflow="fold")  # a backend's name whole, never "flash…"
    for b in catalog:
        caps.add_row(b["name"], *map(escape, b["capabilities"].values()))
    variants = Table(title=escape("variants: -b 'NAME[key=value,...]'; the default sweep also runs the contenders (*)"))
    for col in ("backend", "key", "values (default first)", "what"):
        variants.add_column(col, overflow="fold")
    for b in catalog:
        for v in b["variants"]:
            values = [v["default"], *(x for x in v["values"] if x != v["default"])]
            shown = ", ".join(x + ("*" if x in v["contenders"] else "") for x in values)
            variants.add_row(b["name"], v["key"], escape(shown), escape(v["help"]))
        if b["combinations"]:
            combined = "; ".join(f"{c}*" for c in b["combinations"])
            variants.add_row(
                b["name"], "(together)", escape(combined), "keys that win together: a default sweep runs these"
            )
    tables = [backends, caps, variants]
    if not with_models_and_presets:
        return tables
    models = Table(title="models")
    for col in ("model", "q heads", "kv heads", "head dim", "GQA group", "MLA (latent + rope → value)"):
        models.add_column(col)
    for m in MODELS.values():
        mla = f"{m.kv_lora_rank} + {m.rope_dim}; prefill {m.head_dim}/{m.v_head_dim}" if m.is_mla else ""
        models.add_row(m.name, str(m.num_q_heads), str(m.num_kv_heads), str(m.head_dim), str(m.gqa_group), mla)
    presets = Table(title="presets")
    for col in ("preset", "specs", "models", "batch", "seq", "chunks"):
        presets.add_column(col)
    for name, grid in PRESETS.items():
        presets.add_row(name, str(len(grid.specs())), ", ".join(grid.models), ", ".join(map(str, grid.batch_sizes)),
                        ", ".join(map(str, grid.seq_lens)), ", ".join(map(str, grid.chunks)))  # fmt: skip
    return [*tables, models, presets]


def list_command(console, device: str | None, backend: list[str] | None, as_json: bool) -> None:
    """`run.py list`: the catalog of every backend (or those named) as tables, or as JSON alone."""
    import json

    from .env import pick_device
    from .options import check_known, dedupe, split_list

    dev = pick_device(device)
    names = dedupe(split_list(backend, "--backend"))
    if names:
        check_known("--backend", names, sorted(load_all()))
    catalog = backend_catalog(dev, names)
    if as_json:
        print(json.dumps(catalog, indent=1))
        return
    for shown in catalog_tables(catalog, dev.type, with_models_and_presets=not names):
        console.print(shown)
