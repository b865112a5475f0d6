"""Optional dependencies: imported where needed, or a one-line error naming the extra to install."""

from __future__ import annotations

import json

import pytest

from featurestore.errors import DependencyError
from featurestore.extras import require


def test_an_installed_module_is_imported_and_a_missing_one_names_its_extra():
    assert require("json", "text") is json
    with pytest.raises(DependencyError, match=r"^featurestore_no_such_module is not installed; install the extra with: pip install 'featurestore\[image\]'$"):
        require("featurestore_no_such_module", "image")
