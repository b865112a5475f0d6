"""The project file (``featurestore.yaml``): a team's sources, views, heads and schedules in one place.

Kept in version control beside the data pipeline, Feast-style; ``featurestore refresh`` and
``featurestore serve`` read it. Validation is strict (an unknown key is an error, never
ignored) and the first problem is reported on one line naming the file and the key path, e.g.
``featurestore.yaml: views[0].encoders: unknown encoder 'minilmx'``. Relative paths (store,
sources) are resolved against the file's folder, so the project works from any directory.

Example::

    store: store                      # optional; default $FEATURESTORE_HOME
    sources:
      - name: sms
        path: data/SMSSpamCollection
        format: sms
        id_col: "@line"
        keep: [label]
    views:
      - name: sms
        source: sms
        encoders: [word2vec]
        index: true                   # or {target_recall: 0.95, index_type: auto, memory_budget: 2GB}
        schedule: {interval: 3600}    # or {cron: "0 * * * *"}
    heads:
      - name: sms-spam
        task: spam
        view: sms
        options: {n_splits: 2}        # models.tasks.train keywords
    drift:
      alert_level: 0.1
"""

from __future__ import annotations

import difflib
import re
from datetime import datetime, timezone
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from featurestore import settings
from featurestore.drift import DEFAULT_ALERT
from featurestore.encoders.base import Layers, LongText, Subword, TextGranularity, Tta
from featurestore.encoders.registry import BUILTINS, ENTRY_POINT_GROUP
from featurestore.errors import FeatureStoreError, ProjectError
from featurestore.sources import SOURCE_FORMATS, open_source
from featurestore.store.schema import check_view_name

__all__ = ["DriftConfig", "HeadConfig", "IndexConfig", "Project", "Schedule", "SourceConfig", "ViewConfig", "load_project"]

_CRON_FIELD = re.compile(r"^[\w*/,\-?#LW]+$")
HEAD_FILE_OPTIONS = ("queries", "qrels", "docs", "labels")  # head options naming files, resolved against the project's folder
_CRON_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def _name(value: str) -> str:
    """Views, heads and sources name folders: the store's view-name rule applies to all three."""
    try:
        return check_view_name(value)
    except FeatureStoreError as exc:
        raise ValueError(str(exc).replace("view name", "name")) from None


Name = Annotated[str, AfterValidator(_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """Mirrors ``featurestore materialize``'s source options."""

    name: Name
    path: Path
    format: Literal[SOURCE_FORMATS] | None = None  # type: ignore[valid-type]
    id_col: str | None = None
    text_col: str = "text"
    time_col: str | None = None
    keep: tuple[str, ...] = ()
    header: bool = True
    path_col: str = "path"

    def open(self) -> Any:
        """The source object materialize reads (TextSource, ConllSource or ImageSource)."""
        return open_source(self.path, format=self.format, id_col=self.id_col, text_col=self.text_col, time_col=self.time_col,
                           keep=self.keep or None, header=self.header, path_col=self.path_col)


class IndexConfig(_Strict):
    """``featurestore.index.build_index`` options, used when the view has no index yet."""

    index_type: Literal["auto", "flat", "hnsw", "ivf", "ivfpq"] = "auto"
    memory_budget: str | None = None
    target_recall: float = Field(0.95, gt=0, le=1)

    @field_validator("memory_budget")
    @classmethod
    def _budget(cls, value: str | None) -> str | None:
        if value is not None:
            from featurestore.index.choice import parse_bytes

            try:
                parse_bytes(value)
            except FeatureStoreError as exc:
                raise ValueError(str(exc)) from None
        return value


class Schedule(_Strict):
    """Either ``interval`` (seconds) or ``cron`` (five fields or an @alias), not both."""

    interval: float | None = Field(None, gt=0)
    cron: str | None = None

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        fields = (value or "").split()
        bad = f"cron {value!r} is not a cron expression: five fields (minute hour day month weekday) or @hourly/@daily ..."
        if value is not None and value.strip() not in _CRON_ALIASES:
            if len(fields) != 5 or not all(map(_CRON_FIELD.match, fields)):
                raise ValueError(bad)
            try:  # the ranges too (minute 61 ...), as Prefect's schedule will check them
                from cronsim import CronSim, CronSimError
            except ImportError:
                return value
            try:
                CronSim(value.strip(), datetime.now(timezone.utc))
            except CronSimError as exc:
                raise ValueError(f"{bad} ({exc})") from None
        return value

    @model_validator(mode="after")
    def _one(self) -> Schedule:
        if (self.interval is None) == (self.cron is None):
            raise ValueError("give exactly one of interval (seconds) or cron")
        return self


class ViewConfig(_Strict):
    name: Name
    source: str
    encoders: tuple[str, ...] = Field(min_length=1)
    granularity: TextGranularity = "sentence"
    layers: Layers | None = None  # token level, contextual encoders: as `materialize --layers`
    subword: Subword | None = None  # token level, contextual encoders: as `materialize --subword`
    long_text: LongText | None = None  # sentence level, contextual encoders: as `materialize --long-text`
    tta: Tta | None = None  # image encoders: as `materialize --tta`
    index: IndexConfig | None = None  # true: the default options; false or absent: no index
    schedule: Schedule | None = None
    full_sync: bool = False
    on_duplicate: Literal["error", "last"] = "error"
    strict: bool = False
    shard_size: int = Field(4096, gt=0)

    @field_validator("encoders")
    @classmethod
    def _known_encoders(cls, encoders: tuple[str, ...]) -> tuple[str, ...]:
        for ref in encoders:
            check_encoder_name(ref)
        if len(set(encoders)) < len(encoders):
            raise ValueError("an encoder is listed twice")
        return encoders

    @field_validator("index", mode="before")
    @classmethod
    def _index_flag(cls, value: Any) -> Any:
        """``index: true`` means the default options; a mapping gives them (checked as IndexConfig)."""
        if isinstance(value, bool):
            return {} if value else None
        if value is not None and not isinstance(value, dict):
            raise ValueError("give true, false or a mapping of index_type, memory_budget, target_recall")
        return value


class HeadConfig(_Strict):
    name: Name
    task: str
    view: str
    encoder: str | None = None  # default: the view's first encoder
    options: dict[str, Any] = {}


class DriftConfig(_Strict):
    alert_level: float = Field(DEFAULT_ALERT, gt=0)


class Project(_Strict):
    """A validated project file; ``path`` is where it was read from."""

    path: Path
    store: str | None = None
    sources: tuple[SourceConfig, ...] = ()
    views: tuple[ViewConfig, ...] = Field(min_length=1)
    heads: tuple[HeadConfig, ...] = ()
    drift: DriftConfig = DriftConfig()

    @model_validator(mode="after")
    def _references(self) -> Project:
        """Every name unique, every reference resolvable, every source file present."""
        for key, items in (("sources", self.sources), ("views", self.views), ("heads", self.heads)):
            seen: set[str] = set()
            for i, item in enumerate(items):
                if item.name in seen:
                    raise _KeyError(f"{key}[{i}].name", f"{item.name!r} is used twice")
                seen.add(item.name)
        for i, source in enumerate(self.sources):
            if not source.path.exists():
                raise _KeyError(f"sources[{i}].path", f"file not found: {source.path}")
        sources = [s.name for s in self.sources]
        for i, view in enumerate(self.views):
            if view.source not in sources:
                raise _KeyError(f"views[{i}].source", f"unknown source {view.source!r}; sources: {', '.join(sources) or 'none'}")
        views = {v.name: v for v in self.views}
        for i, head in enumerate(self.heads):
            if head.view not in views:
                raise _KeyError(f"heads[{i}].view", f"unknown view {head.view!r}; views: {', '.join(views)}")
            if head.encoder is not None and head.encoder not in views[head.view].encoders:
                raise _KeyError(f"heads[{i}].encoder", f"{head.encoder!r} is not an encoder of view {head.view!r} ({', '.join(views[head.view].encoders)})")
        return self

    @property
    def store_root(self) -> str:
        return settings.store_root(self.store)

    def view(self, name: str) -> ViewConfig:
        for view in self.views:
            if view.name == name:
                return view
        raise ProjectError(f"{self.path}: no view {name!r}; views: {', '.join(v.name for v in self.views)}")

    def source_of(self, view: ViewConfig) -> SourceConfig:
        return next(s for s in self.sources if s.name == view.source)

    def heads_of(self, view: ViewConfig) -> list[HeadConfig]:
        return [h for h in self.heads if h.view == view.name]

    def head_encoder(self, head: HeadConfig) -> str:
        return head.encoder or self.view(head.view).encoders[0]


class _KeyError(ValueError):
    """A cross-reference problem at a key path (raised inside validation, reported as ProjectError)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def check_encoder_name(ref: str) -> None:
    """Refuse an encoder name that neither a built-in nor a plugin provides, without loading any weights."""
    name, _, arg = ref.partition(":")
    known = sorted(set(BUILTINS) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})
    if name.strip().lower() not in known:
        close = difflib.get_close_matches(name, known, n=1)
        raise ValueError(f"unknown encoder {ref!r}; known: {', '.join(known)}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    if name in ("st", "w2v") and not arg:
        raise ValueError(f"encoder {ref!r} needs a path after the colon, e.g. {name}:/path/to/model")


def load_project(path: str | Path) -> Project:
    """Read and validate a project file; any problem is a :class:`ProjectError` naming the file and key."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ProjectError(f"{file}: project file not found; write one with `featurestore init` or name an existing project file")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ProjectError(f"{file}: {where}not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(f"{file}: cannot read it ({exc})") from None
    if not isinstance(data, dict):
        raise ProjectError(f"{file}: expected a mapping of store, sources, views, heads, drift at the top")
    try:
        return Project.model_validate({**_resolved(data, file.absolute().parent), "path": file})
    except ValidationError as exc:
        raise ProjectError(f"{file}: {_first_error(exc)}") from None


def _resolved(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``data`` with the store root and source paths made absolute against the project's folder."""
    out = dict(data)
    if isinstance(out.get("store"), str) and "://" not in out["store"]:
        out["store"] = str(folder / Path(out["store"]).expanduser())
    if isinstance(out.get("sources"), list):
        out["sources"] = [
            {**s, "path": str(folder / Path(s["path"]).expanduser())} if isinstance(s, dict) and isinstance(s.get("path"), str) else s
            for s in out["sources"]
        ]
    if isinstance(out.get("heads"), list):
        out["heads"] = [_resolved_head(h, folder) for h in out["heads"]]
    return out


def _resolved_head(head: Any, folder: Path) -> Any:
    """A head's file options (ranking queries/qrels/docs, a labels file) made absolute like source paths."""
    options = head.get("options") if isinstance(head, dict) else None
    if not isinstance(options, dict):
        return head
    files = {k: str(folder / Path(v).expanduser()) for k, v in options.items() if k in HEAD_FILE_OPTIONS and isinstance(v, str)}
    return {**head, "options": {**options, **files}}


def _first_error(exc: ValidationError) -> str:
    """The first validation error as ``key.path[i]: message`` (``unknown key 'x'`` for an extra key)."""
    error = exc.errors()[0]
    loc = list(error["loc"])
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _KeyError):
        return f"{cause.key}: {cause}"
    if error["type"] == "extra_forbidden":
        return f"{_key_path(loc[:-1]) or 'top level'}: unknown key {loc[-1]!r}"
    message = str(cause) if isinstance(cause, ValueError) else error["msg"]
    return f"{_key_path(loc) or 'top level'}: {message}"


def _key_path(loc: list[Any]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
