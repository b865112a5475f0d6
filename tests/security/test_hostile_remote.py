"""A bucket written by someone else: object names and CURRENT pointers cannot make a fetch write
outside the local work folder or read another folder of the bucket."""

from __future__ import annotations

import os
import re

import boto3
import pytest

from featurestore.errors import StoreError
from featurestore.store import Store


def _put(root: str, relative: str, body: bytes) -> None:
    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).put_object(Bucket=bucket, Key=f"{prefix}/{relative}", Body=body)


def test_an_object_name_with_dot_dot_is_not_fetched_out_of_the_work_folder(s3_store, tmp_path, cli):
    """From the work folder's models/evil/1, five ``..`` lead to tmp_path: before the check, the
    fetch made tmp_path/planted (and would have written the object there had its key resolved)."""
    _put(s3_store, "models/evil/1/../../../../../planted/manifest.json", b"{}")
    assert Store(s3_store).path.parent == tmp_path / "work"
    code, out, err = cli("models", "--store", s3_store)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"featurestore: error: {s3_store}/models/evil/1/../../") and "leads out of its folder; it is not fetched" in err
    assert not (tmp_path / "planted").exists()


def test_a_current_pointer_that_is_not_a_generation_is_refused(s3_store):
    _put(s3_store, "indexes/sms/enc-1/CURRENT", b"../../../models/spam/1")
    message = f"{s3_store}/indexes/sms/enc-1/CURRENT names '../../../models/spam/1', which is not a generation this store writes"
    with pytest.raises(StoreError, match="^" + re.escape(message)):
        Store(s3_store).read_current("indexes/sms/enc-1", "index.json")
    with pytest.raises(StoreError, match="^" + re.escape(message)):
        Store(s3_store).fetch("indexes/sms/enc-1", replace=True)
