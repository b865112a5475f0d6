"""Image sources: a class-folder tree, a flat folder, or a table (CSV/Parquet ...) listing image files.

``ImageSource(...).batches()`` yields :class:`SourceBatch` es whose ``content`` is the absolute
file path and whose ``content_hash`` is the sha256 of the file's bytes, so a re-run encodes
only images whose bytes changed. Files are listed, not decoded: a file with an image
extension that is not really an image is listed here and fails, with its reason, when the
encoder decodes it; a file that cannot be read is a row with a reason (skipped and counted).

Layouts::

    folders   root/<label>/.../<image>   label = the top folder's name, kept as column "label"
    flat      root/.../<image>           every image under root, no label
    table     a csv/tsv/jsonl/parquet file with a path column (paths relative to the table's
              folder, or absolute) and the columns to keep
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from featurestore.errors import InvalidArgumentError, SourceError
from featurestore.sources.batch import SourceBatch, batched
from featurestore.sources.content import file_sha256
from featurestore.sources.formats import check_columns, detect_format, open_records

__all__ = ["IMAGE_EXTENSIONS", "LAYOUTS", "ImageSource"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
LAYOUTS: tuple[str, ...] = ("folders", "table", "flat")
LABEL = "label"
_TABLE_FORMATS = ("csv", "tsv", "jsonl", "parquet")


@dataclass(frozen=True)
class ImageSource:
    """Where images come from and how they are laid out.

    Parameters
    ----------
    path : a folder of images, or a table file listing them.
    layout : ``folders`` (class folders: the label is the folder name, kept as ``label``),
        ``flat`` (every image under the folder, unlabelled), ``table`` (a file with a path
        column), or None to detect: a file is a table, a folder whose subfolders hold images is
        ``folders``, any other folder is ``flat``.
    id_col : table layout only: the column holding entity ids; None uses the image path
        relative to the table's folder (the path relative to the root for folder layouts).
    path_col : table layout only: the column holding the image paths.
    keep : table layout: columns passed through to the feature table. The folders layout
        always keeps ``label`` (and nothing else); the flat layout keeps nothing.
    extensions : the file suffixes listed in folder layouts (case-insensitive); other files
        are ignored, as are hidden files and folders (names starting with ``.``).
    """

    path: str
    layout: str | None = None
    id_col: str | None = None
    path_col: str = "path"
    keep: tuple[str, ...] = ()
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS

    kind = "image"
    modality = "image"

    def __post_init__(self) -> None:
        if self.layout is not None and self.layout not in LAYOUTS:
            raise InvalidArgumentError(f"unknown image layout {self.layout!r}; choose one of: {', '.join(LAYOUTS)} (or None to detect)")
        wanted = (self.extensions,) if isinstance(self.extensions, str) else self.extensions
        suffixes = tuple(sorted({("." + e.lstrip(".")).lower() for e in wanted}))
        if not suffixes:
            raise SourceError("extensions is empty; give the image suffixes to list, e.g. ('.jpg', '.png')")
        object.__setattr__(self, "extensions", suffixes)
        keep = (self.keep,) if isinstance(self.keep, str) else tuple(self.keep)
        if LABEL not in keep and self.layout != "table" and _is_class_folder_tree(Path(self.path), suffixes, self.layout):
            keep = (LABEL, *keep)  # the folders layout carries its label; the store needs to know the column
        object.__setattr__(self, "keep", keep)

    @property
    def resolved_layout(self) -> str:
        """The layout asked for, or the one detected from what ``path`` holds."""
        path = Path(self.path)
        if not path.exists():
            raise SourceError(f"image source not found: {path}")
        if self.layout is not None:
            return self.layout
        if path.is_file():
            return "table"
        return "folders" if _is_class_folder_tree(path, self.extensions, None) else "flat"

    def describe(self) -> dict[str, Any]:
        layout = self.resolved_layout
        info: dict[str, Any] = {"path": os.fspath(self.path), "layout": layout, "keep": list(self.keep)}
        if layout == "table":
            info.update(id_col=self.id_col, path_col=self.path_col, format=detect_format(Path(self.path)))
        else:
            info["extensions"] = list(self.extensions)
        return info

    def batches(self, batch_size: int = 10_000) -> Iterator[SourceBatch]:
        """Stream the images in sorted order; raises :class:`SourceError` naming the path (and row)."""
        layout = self.resolved_layout
        rows = self._table_rows() if layout == "table" else self._folder_rows(layout)
        yield from batched(rows, _add_image, batch_size, self.keep)

    # -- folders and flat ------------------------------------------------------------------

    def _folder_rows(self, layout: str) -> Iterator[tuple[int, str, str, dict[str, Any]]]:
        root = Path(self.path)
        if not root.is_dir():
            raise SourceError(f"{root} is a file; the {layout} layout reads a folder (a file listing images is layout='table')")
        if self.id_col is not None:
            raise SourceError(f"id_col applies to the table layout only; {layout} sources use the path relative to {root} as id")
        allowed = {LABEL} if layout == "folders" else set()
        extra = [c for c in self.keep if c not in allowed]
        if extra:
            offer = "only 'label'" if layout == "folders" else "nothing (use layout='folders' for a label per class folder)"
            raise SourceError(f"{root}: the {layout} layout cannot keep {', '.join(map(repr, extra))}; it keeps {offer}")
        base = os.path.abspath(root)
        files = _image_files(root, self.extensions)
        if not files:
            looked = " ".join(self.extensions)
            raise SourceError(f"{root} holds no images (looked for {looked}, case-insensitive, in all subfolders)")
        if layout == "folders":
            loose = [f for f in files if "/" not in f]
            if len(loose) == len(files):
                raise SourceError(f"{root} has no class folders holding images; use layout='flat' for unlabelled images")
            if loose:
                raise SourceError(
                    f"{root}: images beside the class folders have no label ({len(loose)}, e.g. {loose[0]!r}); "
                    "move them into a class folder or use layout='flat'"
                )
        for number, rel in enumerate(files, 1):
            kept = {LABEL: rel.split("/", 1)[0]} if layout == "folders" else {}
            yield number, rel, os.path.join(base, rel), kept

    # -- table ---------------------------------------------------------------------------

    def _table_rows(self) -> Iterator[tuple[int, str, str, dict[str, Any]]]:
        table = Path(self.path)
        if table.is_dir():
            raise SourceError(
                f"{table} is a folder; the table layout reads a file listing images (folders: layout='folders' or 'flat')"
            )
        fmt = detect_format(table)
        if fmt not in _TABLE_FORMATS:
            raise SourceError(f"{table}: an image table must be one of {', '.join(_TABLE_FORMATS)}; got a {fmt} file")
        columns, records = open_records(table, fmt, header=True, batch_size=10_000)
        self._check_columns(table, fmt, columns)
        root = os.path.dirname(os.path.abspath(table))
        seen = 0
        for line, record in records:
            seen += 1
            raw = record.get(self.path_col)
            written = "" if raw is None else str(raw).strip()
            if not written:
                raise SourceError(f"{table}: line {line} has an empty image path in column {self.path_col!r}")
            file = os.path.normpath(os.path.join(root, written))
            if not os.path.isfile(file):
                what = "is a folder" if os.path.isdir(file) else "does not exist"
                raise SourceError(
                    f"{table}: line {line}: image {written!r} {what} (looked at {file}); fix the path or drop the row"
                )
            if self.id_col is not None:
                value = record.get(self.id_col)
                entity = "" if value is None else str(value).strip()
                if not entity:
                    raise SourceError(f"{table}: line {line} has an empty id in column {self.id_col!r}; every record needs an id")
            else:
                inside = os.path.commonpath([root, file]) == root
                entity = Path(os.path.relpath(file, root) if inside else file).as_posix()
            yield line, entity, file, {c: record.get(c) for c in self.keep}
        if seen == 0:
            raise SourceError(f"{table} lists no images; nothing to materialize")

    def _check_columns(self, table: Path, fmt: str, columns: list[str]) -> None:
        wanted = [("path", self.path_col)]
        if self.id_col is not None:
            wanted.append(("id", self.id_col))
        wanted += [("keep", c) for c in self.keep]
        check_columns(table, fmt, columns, wanted, flags={"path": "`path_col`", "id": "`id_col`", "keep": "`keep`"})


def _add_image(batch: SourceBatch, row: tuple[int, str, str, dict[str, Any]]) -> None:
    line, entity, file, kept = row
    try:
        digest, reason = file_sha256(file), None  # decoding problems surface at encode time
    except OSError as exc:
        digest, reason = "", f"cannot read the file: {exc.strerror or exc}"
    batch.add(line, entity, file, digest, kept, reason=reason)


def _image_files(root: Path, extensions: tuple[str, ...]) -> list[str]:
    """Posix paths relative to ``root`` of every non-hidden file with an image suffix, sorted."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = Path(folder).relative_to(root)
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions:
                found.append((rel / name).as_posix())
    return sorted(found)


def _is_class_folder_tree(root: Path, extensions: tuple[str, ...], layout: str | None) -> bool:
    """Whether ``root`` reads as class folders: asked for, or detected (a subfolder holds an image)."""
    if layout is not None:
        return layout == "folders"
    if not root.is_dir():
        return False
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for _folder, dirs, files in os.walk(sub):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            if any(not f.startswith(".") and os.path.splitext(f)[1].lower() in extensions for f in files):
                return True
    return False
