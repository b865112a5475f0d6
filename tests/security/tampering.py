"""Tampering with a store the way an attacker who can write its files would: planted files with
their sha256 rewritten, skops archives written by hand."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path


def version_folder(root: Path, name: str = "spam", version: int = 1) -> Path:
    return root / "models" / name / str(version)


def plant(folder: Path, file: str, data: bytes) -> None:
    """Replace ``file`` in a model version and rewrite its sha256 in manifest.json, as an attacker
    who can write the folder can: the manifest's digest then vouches for the planted bytes."""
    (folder / file).write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][file] = hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def skops_archive(schema: dict, members: dict[str, bytes] | None = None) -> bytes:
    """A skops archive written by hand: ``schema.json`` plus any other members."""
    import skops

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("schema.json", json.dumps({**schema, "protocol": 2, "_skops_version": skops.__version__}))
        for name, data in (members or {}).items():
            archive.writestr(name, data)
    return out.getvalue()


def json_node(value) -> dict:
    return {"__class__": type(value).__name__, "__module__": "builtins", "__loader__": "JsonNode", "content": json.dumps(value), "is_json": True}


def call_node(module: str, name: str, *args) -> dict:
    """A node skops builds by calling ``module.name(*args)`` (its ConstructorFromReduceNode)."""
    content = {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode", "content": [json_node(a) for a in args]}
    return {"__class__": name, "__module__": module, "__loader__": "ConstructorFromReduceNode", "content": content}
