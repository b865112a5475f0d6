"""Image sources: the three layouts on the real ants/bees folders, ids, hashes, and each bad-input message."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import settings
from featurestore.errors import InvalidArgumentError, SourceError
from featurestore.sources import bytes_hash, from_dict, to_dict
from featurestore.sources.images import IMAGE_EXTENSIONS, ImageSource

ROOT = settings.data_dir() / "images" / "hymenoptera_train"


@pytest.fixture(scope="module")
def root() -> Path:
    if not ROOT.is_dir():
        pytest.skip(f"needs {ROOT} (the shared evaluation data beside the project)")
    return ROOT


def rows(source: ImageSource, batch_size: int = 10_000) -> list[dict]:
    out = []
    for batch in source.batches(batch_size):
        for i in range(len(batch)):
            out.append(
                {
                    "line": batch.line[i],
                    "id": batch.entity_id[i],
                    "file": batch.content[i],
                    "hash": batch.content_hash[i],
                    "time": batch.event_timestamp[i],
                    "reason": batch.reason[i],
                    **{k: v[i] for k, v in batch.keep.items()},
                }
            )
    return out


def touch_png(path: Path, colour=(200, 10, 10)) -> Path:
    Image = pytest.importorskip("PIL.Image")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path, format="PNG")
    return path


# -- class folders (the real data) ----------------------------------------------------------


def test_class_folders_are_detected_and_labelled(root):
    source = ImageSource(str(root))
    got = rows(source)
    assert len(got) == 245
    assert Counter(r["label"] for r in got) == {"ants": 124, "bees": 121}
    assert all(r["id"].split("/")[0] == r["label"] for r in got)
    assert source.keep == ("label",) and source.describe()["layout"] == "folders"
    assert [r["id"] for r in got] == sorted(r["id"] for r in got)
    assert [r["line"] for r in got] == list(range(1, 246))
    ids = {r["id"] for r in got}
    assert {"ants/ant photos.jpg", "ants/formica.jpeg", "ants/imageNotFound.gif"} <= ids
    assert all(r["reason"] is None and r["time"] is None for r in got)


def test_content_is_the_absolute_path_and_the_hash_covers_the_bytes(root):
    got = rows(ImageSource(str(root)))
    for r in got[:5] + [next(r for r in got if r["id"] == "ants/ant photos.jpg")]:
        assert os.path.isabs(r["file"]) and Path(r["file"]) == root / r["id"]
        assert r["hash"] == bytes_hash(Path(r["file"]).read_bytes())
    assert len({r["hash"] for r in got}) == len(got)


def test_batches_split_without_losing_rows(root):
    batches = list(ImageSource(str(root)).batches(100))
    assert [len(b) for b in batches] == [100, 100, 45]
    assert all(set(b.keep) == {"label"} for b in batches)


def test_round_trips_through_a_plain_dict(root):
    source = ImageSource(str(root), extensions=("JPG", ".Jpeg"))
    data = to_dict(source)
    assert data["kind"] == "image" and data["keep"] == ["label"] and data["extensions"] == [".jpeg", ".jpg"]
    assert from_dict(data) == source
    assert len(rows(from_dict(data))) == 244  # the .gif is not listed


def test_a_folder_without_subfolders_is_flat(root):
    source = ImageSource(str(root / "bees"))
    got = rows(source)
    assert source.describe()["layout"] == "flat" and source.keep == ()
    assert len(got) == 121 and "label" not in got[0] and "/" not in got[0]["id"]


def test_flat_layout_lists_every_image_under_the_folder_without_label(root):
    got = rows(ImageSource(str(root), layout="flat"))
    assert len(got) == 245 and got[0]["id"].startswith("ants/") and "label" not in got[0]


# -- folders: what is listed and what is ignored ------------------------------------------------


def test_extensions_are_case_insensitive_other_files_and_hidden_ones_ignored(tmp_path):
    touch_png(tmp_path / "cats" / "A.PNG")
    touch_png(tmp_path / "cats" / "b.Jpg")  # a PNG under a .jpg name: listed, decoded by content
    touch_png(tmp_path / "dogs" / "deep" / "c.png")
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    (tmp_path / "cats" / "fake.jpg").write_text("not really an image")  # listed: it fails at decode time
    touch_png(tmp_path / "cats" / ".hidden.png")
    touch_png(tmp_path / ".cache" / "x.png")
    got = rows(ImageSource(str(tmp_path)))
    assert [(r["id"], r["label"]) for r in got] == [
        ("cats/A.PNG", "cats"),
        ("cats/b.Jpg", "cats"),
        ("cats/fake.jpg", "cats"),
        ("dogs/deep/c.png", "dogs"),
    ]
    assert all(r["reason"] is None for r in got)


def test_a_changed_file_changes_its_hash_only(tmp_path):
    touch_png(tmp_path / "a.png")
    touch_png(tmp_path / "b.png")
    before = {r["id"]: r["hash"] for r in rows(ImageSource(str(tmp_path)))}
    touch_png(tmp_path / "b.png", colour=(0, 0, 0))
    after = {r["id"]: r["hash"] for r in rows(ImageSource(str(tmp_path)))}
    assert before["a.png"] == after["a.png"] and before["b.png"] != after["b.png"]


def test_an_unreadable_file_is_a_row_with_a_reason(tmp_path, monkeypatch):
    import featurestore.sources.images as images

    touch_png(tmp_path / "ok.png")
    touch_png(tmp_path / "locked.png")
    real = images.file_sha256

    def sha256(path):
        if str(path).endswith("locked.png"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(images, "file_sha256", sha256)
    got = {r["id"]: r for r in rows(ImageSource(str(tmp_path)))}
    assert got["ok.png"]["reason"] is None
    assert got["locked.png"]["reason"] == "cannot read the file: Permission denied"


# -- table ----------------------------------------------------------------------------------


def test_csv_table_with_relative_and_absolute_paths_ids_and_kept_columns(tmp_path, root):
    touch_png(tmp_path / "imgs" / "a.png")
    real = root / "bees" / sorted(os.listdir(root / "bees"))[0]
    table = tmp_path / "list.csv"
    table.write_text(f"path,label,split\nimgs/a.png,cat,train\n{real},bee,test\n")
    got = rows(ImageSource(str(table), keep=("label", "split")))
    assert [r["id"] for r in got] == ["imgs/a.png", real.as_posix()]
    assert [r["file"] for r in got] == [str(tmp_path / "imgs" / "a.png"), str(real)]
    assert [(r["label"], r["split"]) for r in got] == [("cat", "train"), ("bee", "test")]
    assert [r["line"] for r in got] == [2, 3]
    assert got[1]["hash"] == bytes_hash(real.read_bytes())
    assert ImageSource(str(table)).describe()["layout"] == "table"


def test_parquet_table_with_an_id_column_and_a_named_path_column(tmp_path):
    touch_png(tmp_path / "x.png")
    touch_png(tmp_path / "sub" / "y.png")
    table = tmp_path / "list.parquet"
    pq.write_table(pa.table({"image": ["x.png", "sub/y.png"], "uid": ["u1", "u2"], "label": [0, 1]}), table)
    got = rows(ImageSource(str(table), id_col="uid", path_col="image", keep=("label",)))
    assert [(r["id"], r["label"], r["line"]) for r in got] == [("u1", 0, 1), ("u2", 1, 2)]


def test_table_row_with_a_missing_image_names_the_line_and_the_path(tmp_path):
    touch_png(tmp_path / "a.png")
    table = tmp_path / "list.csv"
    table.write_text("path\na.png\nmissing/b.png\n")
    with pytest.raises(SourceError, match=r"list\.csv: line 3: image 'missing/b\.png' does not exist \(looked at .*missing/b\.png\)"):
        rows(ImageSource(str(table)))


def test_table_without_the_path_column_lists_columns_and_suggests(tmp_path):
    table = tmp_path / "list.csv"
    table.write_text("paths,label\na.png,x\n")
    with pytest.raises(SourceError, match=r"path column 'path' not found.*the columns are: paths, label\. Did you mean 'paths'\?"):
        rows(ImageSource(str(table)))


def test_table_missing_kept_column_and_empty_path(tmp_path):
    table = tmp_path / "list.csv"
    table.write_text("path,label\n,x\n")
    with pytest.raises(SourceError, match="keep column 'lable' not found.*Did you mean 'label'"):
        rows(ImageSource(str(table), keep=("lable",)))
    with pytest.raises(SourceError, match="line 2 has an empty image path in column 'path'"):
        rows(ImageSource(str(table)))


def test_a_table_of_another_format_is_refused(tmp_path):
    table = tmp_path / "list.txt"
    table.write_text("a.png\n")
    with pytest.raises(SourceError, match="an image table must be one of csv, tsv, jsonl, parquet"):
        rows(ImageSource(str(table)))


# -- bad input ------------------------------------------------------------------------------


def test_a_path_that_does_not_exist(tmp_path):
    with pytest.raises(SourceError, match=r"image source not found: .*nowhere"):
        rows(ImageSource(str(tmp_path / "nowhere")))


def test_a_folder_with_no_images_says_what_was_looked_for(tmp_path):
    (tmp_path / "readme.txt").write_text("no pictures here")
    with pytest.raises(SourceError, match=r"holds no images \(looked for \.bmp \.gif \.jpeg \.jpg \.png \.tif \.tiff \.webp"):
        rows(ImageSource(str(tmp_path)))


def test_unknown_layout_and_empty_extensions(tmp_path):
    with pytest.raises(InvalidArgumentError, match="unknown image layout 'tree'; choose one of: folders, table, flat"):
        ImageSource(str(tmp_path), layout="tree")
    with pytest.raises(SourceError, match="extensions is empty"):
        ImageSource(str(tmp_path), extensions=())


def test_layout_options_that_do_not_fit_are_refused(tmp_path):
    touch_png(tmp_path / "cats" / "a.png")
    with pytest.raises(SourceError, match="cannot keep 'size'; it keeps only 'label'"):
        rows(ImageSource(str(tmp_path), keep=("size",)))
    with pytest.raises(SourceError, match="id_col applies to the table layout only"):
        rows(ImageSource(str(tmp_path), id_col="name"))
    with pytest.raises(SourceError, match="is a folder; the table layout reads a file"):
        rows(ImageSource(str(tmp_path), layout="table"))
    with pytest.raises(SourceError, match="is a file; the flat layout reads a folder"):
        rows(ImageSource(str(touch_png(tmp_path / "one.png")), layout="flat"))


def test_images_beside_class_folders_have_no_label(tmp_path):
    touch_png(tmp_path / "cats" / "a.png")
    touch_png(tmp_path / "stray.png")
    with pytest.raises(SourceError, match=r"images beside the class folders have no label \(1, e\.g\. 'stray\.png'\)"):
        rows(ImageSource(str(tmp_path)))
    assert [r["id"] for r in rows(ImageSource(str(tmp_path), layout="flat"))] == ["cats/a.png", "stray.png"]


def test_default_extensions_cover_the_common_formats():
    assert set(IMAGE_EXTENSIONS) == {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
