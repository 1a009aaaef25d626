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
            }
        )
    return out
