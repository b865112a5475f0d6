"""Head files: how a trained head is written into a model version folder and read back safely.

A head is ``head.skops`` (a scikit-learn head: skops, no pickle) or ``head.safetensors`` +
``head.json`` (a torch head's tensors and config). Loading never runs code a model folder brings:

- ``head.skops`` is read only when every object in it is of a type in ``SKOPS_TYPES`` and built by
  a skops node kind in ``SKOPS_NODES``: exact names, the ones this project's heads save (a test
  trains every head kind and checks), never a prefix such as ``numpy.`` (which admits
  ``numpy.testing._private.utils.runstring``) and not skops's own default trust (every
  scikit-learn estimator, numpy and scipy ufuncs);
- a torch head is rebuilt from tensors (safetensors, no pickle) by a class on an allow-list;
- a file that cannot be read as what it should be is a :class:`ModelError` naming the file.

Torch heads agree to this contract: the head object (the scikit-learn style wrapper that
TrainResult carries) is listed in ``TORCH_HEAD_CLASSES`` (or registered with :func:`torch_head`,
e.g. by a plugin or a test) and exposes

- ``state_tensors() -> dict[str, torch.Tensor]``: everything learned;
- ``config() -> dict``: JSON-able constructor arguments and label names;
- classmethod ``from_state(tensors, config)``: the fitted head again.

Heads are written byte-for-byte deterministically (skops zip members get canonical names and a
fixed timestamp), so training twice from the same manifest gives identical files. The version
folder around them (manifest, checksums, versions) is :mod:`models.registry`'s.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import zipfile
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from featurestore.errors import FeatureStoreError, ModelError
from featurestore.sources.content import file_sha256

__all__ = ["SKOPS_NODES", "SKOPS_TYPES", "TORCH_HEAD_CLASSES", "canonical_skops", "first_line", "head_files", "read_head", "skops_refusals", "to_json", "torch_head", "write_head"]

SKOPS_FILE = "head.skops"
TORCH_FILE = "head.safetensors"
TORCH_CONFIG = "head.json"
# Every type a saved scikit-learn head holds, by full name: what the heads this project trains save
# (classify/spam/image logistic and mlp pipelines, the lexical and hybrid text pipelines, the ranking
# pipeline, TokenLogisticRegression).
# tests/security/test_skops_trust.py trains each kind and checks its archive against these sets, so a
# head that needs another type fails a test instead of widening trust. None of them runs code when
# built: skops makes them with ``cls.__new__`` and sets their attributes.
SKOPS_TYPES = frozenset({
    "builtins.dict",
    "builtins.list",
    "builtins.slice",
    "builtins.str",
    "builtins.tuple",
    "numpy.float64",
    "numpy.ndarray",
    "numpy.random.mtrand.RandomState",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.feature_extraction.text.TfidfVectorizer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._logistic.LogisticRegressionCV",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.Normalizer",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._label.LabelBinarizer",
    "models.tagging.TokenLogisticRegression",
})
# The skops node kinds those heads are written with (SliceNode: a ColumnTransformer's column slices,
# built from three JSON integers). Not among them: FunctionNode, MethodNode,
# PartialNode, OperatorFuncNode and ConstructorFromReduceNode (they hand out or call callables).
SKOPS_NODES = frozenset({"DictNode", "JsonNode", "ListNode", "NdArrayNode", "ObjectNode", "RandomStateNode", "SliceNode", "TupleNode", "TypeNode"})
TORCH_HEAD_CLASSES = (
    "models.tagging.TorchTokenClassifier",
    "models.finetuned.FineTunedImageClassifier",
    "models.finetuned.FineTunedTextClassifier",
)
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_SKOPS_IDS = re.compile(r'("__id__": )(\d+)|"(\d+)\.npy"')
_TORCH_HEADS: dict[str, type] = {}

H = TypeVar("H", bound=type)


def torch_head(cls: H) -> H:
    """Class decorator: allow ``cls`` (a torch head following the contract above) to be loaded."""
    _TORCH_HEADS[_class_path(cls)] = cls
    return cls


def write_head(folder: Path, head: Any) -> dict[str, str]:
    path = _class_path(type(head))
    if path in _TORCH_HEADS or path in TORCH_HEAD_CLASSES:
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_tensors().items()}
        save_file(tensors, str(folder / TORCH_FILE))
        (folder / TORCH_CONFIG).write_text(to_json(head.config()))
        return {"format": "safetensors", "class": path}
    import skops.io as sio

    data = canonical_skops(sio.dumps(head))
    refused = skops_refusals(data)
    if refused:  # a head the registry would refuse to load is never saved
        raise ModelError(
            f"a {path} head holds types the registry does not load ({', '.join(map(repr, refused[:3]))}); it is not saved. "
            "Add them to models.headfiles.SKOPS_TYPES only once it is clear that building them runs no code"
        )
    (folder / SKOPS_FILE).write_bytes(data)
    return {"format": "skops", "class": path}


def head_files(folder: Path, head: Any) -> dict[str, str]:
    """Write ``head``'s files into ``folder`` as :func:`save_model` does; their sha256 by file name."""
    write_head(folder, head)
    return {p.name: file_sha256(p) for p in sorted(folder.iterdir())}


def canonical_skops(data: bytes) -> bytes:
    """The same skops archive with deterministic bytes.

    skops names array members and memo ids after ``id()`` of the objects, and stamps members
    with the current time: both change from run to run. Ids are renumbered in order of first
    appearance (a bijection, so shared references stay shared) and every member gets a fixed
    timestamp.
    """
    source = zipfile.ZipFile(io.BytesIO(data))
    numbers: dict[str, str] = {}

    def renumber(match: re.Match[str]) -> str:
        new = numbers.setdefault(match.group(2) or match.group(3), str(len(numbers) + 1))
        return f"{match.group(1)}{new}" if match.group(2) else f'"{new}.npy"'

    schema = _SKOPS_IDS.sub(renumber, source.read("schema.json").decode("utf-8"))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        members = []
        for info in source.infolist():
            if info.filename == "schema.json":
                members.append(("schema.json", schema.encode("utf-8"), info.compress_type))
            else:
                members.append((f"{numbers[info.filename.removesuffix('.npy')]}.npy", source.read(info), info.compress_type))
        for member, payload, compression in sorted(members):
            target.writestr(zipfile.ZipInfo(member, date_time=_FIXED_TIME), payload, compress_type=compression)
    return out.getvalue()


# What reading a damaged or foreign head file raises, from zipfile, json, skops, safetensors and torch.
_DAMAGED = (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError, RecursionError,
            NotImplementedError, zipfile.BadZipFile, zlib.error)


def read_head(model: str, path: Path, head: dict[str, Any]) -> Any:
    if head.get("format") == "skops":
        return _read_skops(model, path / SKOPS_FILE)
    if head.get("format") == "safetensors":
        return _read_torch(model, path, _allowed_torch_head(model, head.get("class", "")))
    raise ModelError(f"{model}: unknown head format {head.get('format')!r}; formats: skops, safetensors")


def _read_skops(model: str, file: Path) -> Any:
    """The head in ``file``, built only once its schema holds nothing but allowed types and node kinds."""
    import skops.io as sio

    data = file.read_bytes()
    try:
        refused = skops_refusals(data)
    except _DAMAGED as exc:
        raise ModelError(f"{model}: {file.name} is damaged or not a skops archive ({first_line(exc)}); retrain it") from None
    if refused:
        raise ModelError(
            f"{model}: {file.name} holds types that no head of this project saves ({', '.join(map(repr, refused[:3]))}); "
            "it is not loaded. Load models only from stores you trust, or retrain it"
        )
    try:
        return sio.loads(data, trusted=sorted(SKOPS_TYPES))
    except _DAMAGED as exc:
        raise ModelError(f"{model}: {file.name} is damaged ({first_line(exc)}); retrain it") from None


def skops_refusals(data: bytes) -> list[str]:
    """What in a skops archive is outside ``SKOPS_TYPES`` / ``SKOPS_NODES``, sorted (empty: loadable).

    Read from ``schema.json`` alone (nothing is imported or built), every node of the tree, then
    checked again by skops's own audit: its defaults trust far more (every scikit-learn estimator,
    numpy and scipy ufuncs as functions), which the schema walk does not. A damaged archive raises
    one of ``_DAMAGED`` (``BadZipFile``, ``KeyError`` for a missing schema, ``ValueError`` ...).
    """
    import skops.io as sio

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
    refused: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if "__loader__" in node:
                kind, type_name = str(node["__loader__"]), f"{node.get('__module__')}.{node.get('__class__')}"
                if kind not in SKOPS_NODES:
                    refused.add(f"{type_name} ({kind})")
                elif type_name not in SKOPS_TYPES:
                    refused.add(type_name)
            stack.extend(node.values())
    if not refused:  # skops builds its audit tree only from a schema of known node kinds and types
        refused.update(t for t in sio.get_untrusted_types(data=data) if t not in SKOPS_TYPES)
    return sorted(refused)


def _read_torch(model: str, path: Path, cls: type) -> Any:
    """A torch head from its tensors (safetensors: no pickle) and its JSON config."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path / TORCH_FILE))
    except (SafetensorError, *_DAMAGED) as exc:
        raise ModelError(f"{model}: {TORCH_FILE} is damaged or not a safetensors file ({first_line(exc)}); retrain it") from None
    try:
        config = json.loads((path / TORCH_CONFIG).read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelError(f"{model}: {TORCH_CONFIG} cannot be read ({first_line(exc)}); retrain it") from None
    try:
        return cls.from_state(tensors, config)
    except FeatureStoreError as exc:
        raise ModelError(f"{model}: {TORCH_CONFIG} does not describe a {cls.__name__} ({exc}); retrain it") from None
    except _DAMAGED as exc:
        raise ModelError(f"{model}: {TORCH_FILE} and {TORCH_CONFIG} do not make a {cls.__name__} ({first_line(exc)}); retrain it") from None


def first_line(exc: BaseException) -> str:
    """An exception's message cut to one short line: a damaged file's errors can run to pages."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


def _allowed_torch_head(model: str, class_path: Any) -> type:
    """The torch head class named in the manifest, only when it is on the allow-list."""
    if not isinstance(class_path, str):
        raise ModelError(f"{model}: head class {class_path!r} is not an allowed torch head; it is not loaded")
    if class_path in _TORCH_HEADS:
        return _TORCH_HEADS[class_path]
    if class_path in TORCH_HEAD_CLASSES:
        module, _, attr = class_path.rpartition(".")
        return getattr(importlib.import_module(module), attr)
    raise ModelError(f"{model}: head class {class_path!r} is not an allowed torch head; it is not loaded")


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"

def to_json(value: Any) -> str:
    """``value`` as the registry's JSON files hold it: indented, sorted keys, numpy values as plain ones."""
    return json.dumps(value, indent=2, sort_keys=True, default=_jsonable)


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays, paths and times in reports become plain JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, datetime)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")

