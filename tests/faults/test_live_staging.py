"""The clean-up of dead runs never touches a live run's staging: a run that finds the view's lock
held stops with a one-line error and changes nothing, and the live run's staging stays."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import snapshot

LIVE_RUN = """
import sys, time
from featurestore.locks import view_lock
from featurestore.store import Store
store, encoder_id = Store(sys.argv[1]), sys.argv[2]
with view_lock("sms", "materialize", store=store, encoder_id=encoder_id):  # what a live materialize holds from its plan to its last commit
    staging = store.path / "_staging" / "sms" / encoder_id / "run"
    staging.mkdir(parents=True)
    (staging / "plan.json").write_text("{}")
    print("staged", flush=True)
    time.sleep(600)
"""


def test_a_run_of_a_view_that_a_live_run_holds_stops_and_leaves_its_staging(tmp_path, sms_file, word2vec, cli):
    store = tmp_path / "store"
    live = subprocess.Popen([sys.executable, "-c", LIVE_RUN, str(store), word2vec.encoder_id], stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline().strip() == "staged"
        before = snapshot(store)
        code, out, err = cli("materialize", sms_file(50), "--view", "sms", "--encoder", "word2vec", "--store", store,
                             "--id-col", "@line", "--runner", "inline")
        assert code == 2 and out == ""
        assert err.startswith(f"featurestore: error: view sms ({word2vec.encoder_id}) is being written by another run (materialize, pid ")
        assert err.count("\n") == 1 and "try again when it finishes" in err
        assert snapshot(store) == before  # the live run's plan and staging included
        assert (store / "_staging" / "sms" / word2vec.encoder_id / "run" / "plan.json").is_file()
    finally:
        live.kill()
        live.wait(timeout=30)
        live.stdout.close()

    code, out, err = cli("materialize", sms_file(50), "--view", "sms", "--encoder", "word2vec", "--store", store,
                         "--id-col", "@line", "--runner", "inline")
    assert code == 0, err
    assert not (store / "_staging").exists()  # the holder is dead now: its staging was a leftover
