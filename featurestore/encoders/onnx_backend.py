"""ONNX Runtime execution of the encoders on CPU: the export cache every exported network shares.

An execution detail of the encoder: the same weights give the same vectors and the same
``encoder_id`` through either backend. A network is exported once per weights file (and what
runs around it, exporter and onnxruntime version) with ``torch.onnx.export`` into
``<user cache>/onnx/<model>-<key>/``. What is exported, how it is checked and how its session
is built is an :class:`Export`: a sentence model's (:mod:`featurestore.encoders.onnx_text`) or
the image encoder's (:mod:`featurestore.encoders.onnx_image`); this module keeps the cache, the
check's verdict, the sha256 that guard every load and the CPU session. An export is kept only
when its vectors match torch's on the plan's fixed inputs (max ``|cos - 1| <= 1e-5``); the figure
is recorded in the folder's ``onnx.json`` beside the sha256 of ``model.onnx``, which is checked
on every load (a changed file is refused and exported again). A model the backend does not
reproduce stays on torch (the reason in the encoder's ``backend_reason``); so does one whose
export fails or fails its check, said once on stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence


FORMAT = 1  # bump when the export or its sidecar changes: old folders are then ignored
OPSET = 17
EXPORTER = "torch.onnx.export(dynamo=False)"
TOLERANCE = 1e-5  # max |cos - 1| between ONNX and torch vectors on a plan's check inputs
SIDECAR = "onnx.json"
MODEL_FILE = "model.onnx"


_SEEN: set[str] = set()  # what was already said on stderr in this process


def say_once(message: str) -> None:
    """One line on stderr, once per process."""
    if message not in _SEEN:
        _SEEN.add(message)
        sys.stderr.write(f"featurestore: {message}\n")
        sys.stderr.flush()


class Unsupported(Exception):
    """The model cannot run through ONNX here; the message says why (it stays on torch)."""


class Export(Protocol):
    """One kind of exported network: what its export depends on, how it is written, checked and run.

    ``figure`` names the number ``compare`` returns and ``tolerance`` the most it may be (a plan
    without them is checked by max |cos - 1| <= :data:`TOLERANCE`)."""

    def key_parts(self) -> dict[str, Any]:
        """What, besides the weights, exporter and versions, changes the export (part of its folder's key)."""

    def sidecar_parts(self) -> dict[str, Any]:
        """What ``onnx.json`` records about the export for people."""

    def write(self, torch_model: Any, path: Path) -> None:
        """``torch.onnx.export`` the network of ``torch_model`` (the loaded torch encoder model) to ``path``."""

    def build(self, model_bytes: bytes) -> Any:
        """The runtime model from the bytes of a checked ``model.onnx``."""

    def compare(self, onnx_model: Any, torch_model: Any) -> tuple[float, int, str]:
        """``(max |cos - 1|, inputs, what they are)`` between the two backends' vectors of the fixed check inputs."""


def threads() -> int:
    """Intra-op threads: the cores this process may use, or fewer when ``OMP_NUM_THREADS`` says so
    (the service's ``--threads``, Dask's workers)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    return max(1, min(cores, int(omp))) if omp.isdigit() and int(omp) > 0 else cores


def session(model_bytes: bytes, *, n_threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session of a checked export: all graph optimisations, :func:`threads`
    intra-op threads, no spinning; built from bytes already checked against the sidecar, so there
    is no second read between the check and the load."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = n_threads or threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting on a shared machine
    return ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------------------ the cache


def export_key(weights_digest: str, plan: Export) -> str:
    """What an export and its check depend on: the weights, what runs around the network (a
    sentence model's tokenizer and pooling, an image encoder's layer and crop), the exporter
    (torch's version) and onnxruntime's version. Versions are read from package metadata, so
    finding a cached export imports neither torch nor onnxruntime."""
    parts = {
        "format": FORMAT,
        "weights": weights_digest,
        **plan.key_parts(),
        "exporter": EXPORTER,
        "opset": OPSET,
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def cache_root() -> Path:
    from featurestore import settings

    return settings.user_cache_dir() / "onnx"


def cache_folder(model: str, weights_digest: str, plan: Export) -> Path:
    """``<user cache>/onnx/<model>-<key>``: the folder of one export (:func:`export_key`)."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in model)[:60] or "model"
    return cache_root() / f"{safe}-{export_key(weights_digest, plan)}"


def load_cached(folder: Path, plan_: Export, weights_digest: str) -> Any:
    """The cached export, checked; None when there is none. :class:`Unsupported` when its check
    failed (recorded, not retried); :class:`Tampered` when its file is not the one recorded."""
    try:
        sidecar = json.loads((folder / SIDECAR).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise Tampered(f"{folder / SIDECAR} is not readable JSON ({exc})") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT or sidecar.get("weights_digest") != weights_digest:
        raise Tampered(f"{folder / SIDECAR} does not describe this export (format or weights digest differ)")
    check = sidecar.get("check") if isinstance(sidecar.get("check"), dict) else {}
    if check.get("passed") is not True:
        raise Unsupported(f"its ONNX export failed the check against torch: {check.get('reason') or 'no figure recorded'}")
    try:
        data = (folder / MODEL_FILE).read_bytes()
    except OSError as exc:
        raise Tampered(f"{folder / MODEL_FILE} cannot be read ({exc.strerror or exc})") from None
    if hashlib.sha256(data).hexdigest() != sidecar.get("onnx_sha256"):
        raise Tampered(f"{folder / MODEL_FILE} is not the file exported (its sha256 differs from {SIDECAR})")
    return plan_.build(data)


class Tampered(Exception):
    """A cached export whose files are not what its sidecar records."""


def export(folder: Path, plan_: Export, weights_digest: str, model_name: str, torch_model: Callable[[], Any]) -> Any:
    """Export, check against torch and store the network of ``torch_model()`` (the loaded torch
    model: a SentenceTransformer, an image encoder's network) under ``folder``, atomically,
    under a lock; returns the checked model, or None when the check failed (recorded in the
    sidecar, said on stderr)."""
    from featurestore.locks import cache_lock

    folder.parent.mkdir(parents=True, exist_ok=True)
    with cache_lock(folder.parent / f"{folder.name}.lock"):
        try:  # another process may have exported it while this one waited
            found = load_cached(folder, plan_, weights_digest)
            if found is not None:
                return found
        except Tampered:
            pass
        say_once(f"exporting {model_name} to ONNX (once per weights file)...")
        tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            model = torch_model()
            started = time.perf_counter()
            plan_.write(model, tmp / MODEL_FILE)
            data = (tmp / MODEL_FILE).read_bytes()
            onnx_model = plan_.build(data)
            worst, count, noun = plan_.compare(onnx_model, model)
            figure, tolerance = getattr(plan_, "figure", "max_abs_cos_minus_1"), getattr(plan_, "tolerance", TOLERANCE)
            passed = bool(worst <= tolerance)
            label = {"max_abs_cos_minus_1": "max |cos - 1|", "one_minus_mean_cos": "1 - mean cos"}.get(figure, figure)
            check = {
                noun: count,
                figure: worst,
                "tolerance": tolerance,
                "passed": passed,
                "reason": None if passed else f"{label} = {worst:.3g} on {count} {noun}, above {tolerance:g}",
            }
            sidecar = {
                "format": FORMAT,
                "model": model_name,
                "weights_digest": weights_digest,
                "exporter": EXPORTER,
                "opset": OPSET,
                "torch": _version("torch"),
                "onnxruntime": _version("onnxruntime"),
                "onnx_sha256": hashlib.sha256(data).hexdigest() if passed else None,
                **plan_.sidecar_parts(),
                "check": check,
                "export_seconds": round(time.perf_counter() - started, 2),
            }
            if not passed:
                (tmp / MODEL_FILE).unlink()
            (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=1, sort_keys=True))
            _replace_folder(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if not passed:
        say_once(f"warning: {model_name} stays on torch: its ONNX export failed the check against torch ({check['reason']})")
        return None
    return onnx_model


def load_or_export(model_name: str, plan_: Export, weights_digest: str, torch_model: Callable[[], Any], *, label: str) -> tuple[Any, str | None]:
    """The checked cached export of ``plan_``, or a new one; ``(None, reason)`` when the model stays
    on torch (a failed or recorded check, an export torch cannot make, an unwritable cache: said
    once on stderr). ``label`` names the model in reasons (its folder or weights file)."""
    from featurestore.errors import FeatureStoreError

    try:
        folder = cache_folder(model_name, weights_digest, plan_)
        try:
            model = load_cached(folder, plan_, weights_digest)
        except Tampered as exc:
            say_once(f"warning: {exc}; exporting it again")
            model = None
        if model is None:
            model = export(folder, plan_, weights_digest, model_name, torch_model)
        if model is None:
            return None, "its ONNX export failed the check against torch"
        return model, None
    except Unsupported as exc:
        reason = f"{label}: {exc}"
    except FeatureStoreError:  # torch cannot load the model either (a refused file): that error is the user's answer
        raise
    except OSError as exc:
        reason = f"the ONNX export cannot be written under {cache_root()} ({exc.strerror or exc})"
    except Exception as exc:  # noqa: BLE001 - torch's exporter fails in many ways on models it cannot trace; torch still runs them
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        reason = f"torch.onnx.export could not export it ({type(exc).__name__}: {first})"
    say_once(f"warning: {model_name} runs on torch, not ONNX Runtime: {reason}")
    return None, reason


def choose(
    model_name: str,
    requested: str,
    blocker: str | None,
    key: tuple[str, ...],
    load: Callable[[], tuple[Any, str | None]],
    loaded: dict[tuple[str, ...], tuple[Any, str | None]],
    lock: Any,
) -> tuple[Any, str | None]:
    """An encoder's backend when ONNX is not opted out of: ``(ONNX model, None)`` or ``(None, why torch)``.

    ``requested`` is ``auto`` or ``onnx`` (:func:`featurestore.settings.encoder_backend`);
    ``blocker`` why this encoder cannot use ONNX whatever its weights (CUDA, an option that runs
    on torch), or None; ``load()`` the export's :func:`load_or_export`, called once per ``key``
    (the weights file and what the export depends on) and process, kept in ``loaded`` under
    ``lock``. ``onnx`` asked for and not possible is an :class:`EncoderError`.
    """
    from featurestore.errors import EncoderError

    if blocker is None:
        with lock:
            if key not in loaded:
                loaded[key] = load()
            model, blocker = loaded[key]
        if model is not None:
            return model, None
    if requested == "onnx":
        raise EncoderError(f"{model_name} cannot run through ONNX Runtime here: {blocker}; use backend auto or torch (FEATURESTORE_ENCODER_BACKEND)")
    return None, blocker


def _replace_folder(new: Path, target: Path) -> None:
    """Put ``new`` at ``target``: a rename; an older folder there is first renamed away, then removed."""
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(target, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(new, target)


def available(modules: Sequence[str] = ("onnxruntime", "tokenizers")) -> str | None:
    """None when ``modules`` (for sentence models onnxruntime and tokenizers) can be imported, else what is missing."""
    from importlib.util import find_spec

    missing = [name for name in modules if find_spec(name) is None]
    return None if not missing else f"{' and '.join(missing)} not installed (pip install 'featurestore[onnx]')"


def cuda_present() -> bool:
    """Whether torch would run on CUDA here (device ``auto``), without importing torch: a CUDA
    build of torch (its ``version.py`` names a CUDA version) and an NVIDIA driver. Once torch is
    imported, it is asked."""
    import re
    from importlib.util import find_spec

    torch = sys.modules.get("torch")
    if torch is not None:
        return bool(torch.cuda.is_available())
    if not (os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")):
        return False
    spec = find_spec("torch")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            text = (Path(folder) / "version.py").read_text()
        except OSError:
            continue
        return re.search(r"^cuda\b[^=\n]*=\s*['\"]", text, re.M) is not None
    return False
