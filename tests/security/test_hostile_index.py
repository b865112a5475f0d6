"""An index folder from an untrusted source or damaged on disk: ``index.json`` cannot name files
outside its folder, links and foreign files are refused before FAISS parses them, and every
damaged file is one line naming it with what to do (exit 2), the store left as it was."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from featurestore.index import VectorIndex, build_index
from featurestore.index.files import FAISS_HEADERS
from featurestore.store import Store, TableMeta
from tests.conftest import snapshot
from tests.featurestore.index.test_index import _synthetic_rows, clustered

META = TableMeta(view="synth", encoder_id="synth-1", encoder_name="synth", encoder_spec={}, dim=16, metric="cosine", modality="text")
REBUILD = "rebuild it with `featurestore index build`"


@pytest.fixture(scope="module")
def _indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("indexed") / "store"
    store = Store(root)
    x = clustered(300, 16, seed=5)
    store.table("synth", META.encoder_id).append(_synthetic_rows([f"e{i}" for i in range(300)], x), META)
    build_index("synth", store=store, index_type="flat")
    return root


@pytest.fixture
def indexed(_indexed, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(_indexed, root, symlinks=True)
    return root


def _folder(root):
    return root / "indexes" / "synth" / "synth-1"


def _files(root) -> dict[str, str]:
    return json.loads((_folder(root) / "index.json").read_text())["files"]


def _search(cli, root):
    before = snapshot(root)
    code, out, err = cli("search", "--view", "synth", "--id", "e3", "--store", root)
    assert snapshot(root) == before
    return code, out, err


def test_the_untouched_index_searches(indexed, cli):
    code, out, err = _search(cli, indexed)
    assert code == 0 and err == "" and "e3" in out


@pytest.mark.parametrize("kind", ["index", "ids"])
@pytest.mark.parametrize("name", ["../../../../outside.{ext}", "/tmp/outside.{ext}", "{kind}-x/../../{kind}.{ext}"])
def test_index_json_cannot_name_a_file_outside_the_index_folder(indexed, cli, tmp_path, kind, name):
    """The named file exists and is valid (a copy of the real one): only its place is wrong."""
    folder = _folder(indexed)
    info = json.loads((folder / "index.json").read_text())
    ext = "faiss" if kind == "index" else "parquet"
    name = name.format(kind=kind, ext=ext)
    target = (folder / name) if not name.startswith("/") else tmp_path / "elsewhere.bin"
    if name.startswith("/"):
        name = str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / info["files"][kind], target)
    info["files"][kind] = name
    (folder / "index.json").write_text(json.dumps(info))
    code, _, err = _search(cli, indexed)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"featurestore: error: {folder / 'index.json'} names files that are not this index's ({kind}: {name!r})")
    assert err.endswith(f"; {REBUILD}\n")


def test_index_json_with_an_unknown_file_kind_is_refused(indexed, cli):
    folder = _folder(indexed)
    info = json.loads((folder / "index.json").read_text())
    info["files"]["script"] = "index-abc.faiss"
    (folder / "index.json").write_text(json.dumps(info))
    code, _, err = _search(cli, indexed)
    assert code == 2 and "names files that are not this index's (script: 'index-abc.faiss')" in err and err.count("\n") == 1


@pytest.mark.parametrize("listed", [None, {}])
def test_index_json_that_lists_no_files_is_refused(indexed, cli, listed):
    """Files under the plain names ``index.faiss`` and ``ids.parquet`` are not read: only what
    ``index.json`` lists is."""
    folder = _folder(indexed)
    info = json.loads((folder / "index.json").read_text())
    shutil.copy(folder / info["files"]["index"], folder / "index.faiss")
    shutil.copy(folder / info["files"]["ids"], folder / "ids.parquet")
    if listed is None:
        del info["files"]
    else:
        info["files"] = listed
    (folder / "index.json").write_text(json.dumps(info))
    code, _, err = _search(cli, indexed)
    assert code == 2 and err == f"featurestore: error: {folder / 'index.json'} lists no files of this index (its \"files\" entry is missing or empty); {REBUILD}\n"


@pytest.mark.parametrize("kind", ["index", "ids"])
def test_a_link_in_the_index_folder_is_refused(indexed, cli, tmp_path, kind):
    path = _folder(indexed) / _files(indexed)[kind]
    outside = tmp_path / "outside"
    shutil.move(path, outside)  # the same bytes, now outside the store
    os.symlink(outside, path)
    code, _, err = _search(cli, indexed)
    assert code == 2 and err == f"featurestore: error: the index file {path} is a link; an index folder holds plain files only, {REBUILD}\n"


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda f: f.write_bytes(f.read_bytes()[: f.stat().st_size // 2]), "is damaged ("),
        (lambda f: f.write_bytes(f.read_bytes()[:4] + os.urandom(200)), "is damaged ("),
        (lambda f: f.write_bytes(b"PAR1" + b"\0" * 100), "is not a FAISS index built here (it starts with b'PAR1')"),
        (lambda f: f.write_bytes(b""), "is not a FAISS index built here (it starts with b'')"),
        (lambda f: f.unlink(), "cannot be read (No such file or directory)"),
    ],
    ids=["truncated", "garbage-after-header", "foreign", "empty", "missing"],
)
def test_a_damaged_index_file_is_one_line(indexed, cli, damage, says):
    path = _folder(indexed) / _files(indexed)["index"]
    damage(path)
    code, _, err = _search(cli, indexed)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"featurestore: error: the index file {path} {says}") and err.endswith(f"; {REBUILD}\n")


@pytest.mark.parametrize(
    "content, says",
    [
        (b"not parquet at all", "is damaged ("),
        (None, "is not one ("),  # a real Parquet file, without the id map's columns
    ],
    ids=["not-parquet", "wrong-columns"],
)
def test_a_damaged_id_map_is_one_line(indexed, cli, content, says):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = _folder(indexed) / _files(indexed)["ids"]
    if content is None:
        pq.write_table(pa.table({"x": list(range(300))}), path)
    else:
        path.write_bytes(content)
    code, _, err = _search(cli, indexed)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"featurestore: error: the id map {path} {says}") and err.endswith(f"; {REBUILD}\n")


@pytest.mark.parametrize("text", ["{oops", "[1, 2, 3]", '{"view": "synth", "evil": 1}', "[" * 100_000])
def test_a_damaged_index_json_is_one_line(indexed, cli, text):
    meta = _folder(indexed) / "index.json"
    meta.write_text(text)
    code, _, err = _search(cli, indexed)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"featurestore: error: {meta} cannot be read (") and err.endswith(f"; {REBUILD}\n")


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf"])
def test_every_index_type_built_here_passes_the_header_check(tmp_path, index_type):
    x = clustered(1_000, 16, seed=1)
    index = VectorIndex.build(np.array([str(i) for i in range(len(x))], dtype=object), x, view="v", encoder_id="t-1",
                              metric="cosine", table_version=0, index_type=index_type)
    index.save(tmp_path)
    assert (tmp_path / index.info.files["index"]).read_bytes()[:4] in FAISS_HEADERS
    assert len(VectorIndex.load(tmp_path)) == len(x)


def test_the_ivfpq_index_type_passes_the_header_check(tmp_path):
    """Its file starts as its outermost index does (IndexRefine); training one takes long on few
    rows, and the header does not depend on training, so the factory's untrained index is written."""
    import faiss

    from featurestore.index import choose_factory

    faiss.write_index(faiss.index_factory(16, choose_factory(1_000_000, 16, index_type="ivfpq"), faiss.METRIC_INNER_PRODUCT), str(tmp_path / "x.faiss"))
    assert (tmp_path / "x.faiss").read_bytes()[:4] in FAISS_HEADERS
