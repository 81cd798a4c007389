"""``batchlab noise-scale --json``: what --out saves, on stdout; progress on stderr."""

import json

from batchlab.cli import app
from batchlab.cli._common import EXIT_OK

from .test_cli_noise import ENV, _one_torch_thread, runner  # noqa: F401 (autouse fixture)

SMALL = ["noise-scale", "--workload", "linreg", "--batch-size", "64", "--steps", "5"]


def test_noise_scale_json_is_the_saved_payload_and_no_table(tmp_path):
    out = tmp_path / "noise_scale.json"
    result = runner.invoke(app, [*SMALL, "--out", str(out), "--json"], env=ENV)
    assert result.exit_code == EXIT_OK, result.output
    doc = json.loads(result.stdout)
    assert doc == json.loads(out.read_text())
    assert doc["workload"] == "linreg" and doc["mode"] == "measure"
    assert doc["batch_size"] == 64 and doc["micro_batch_size"] == 16 and doc["steps"] == 5
    assert len(doc["history"]) == 5 and doc["result"]["n"] == 5
    assert "b_simple" in doc["result"] and "per_module" in doc["result"]
    assert "Per module" not in result.output  # no tables, on either stream
    assert "measuring" in result.stderr and "Saved the history" in result.stderr


def test_noise_scale_json_while_training_keeps_the_step_lines_off_stdout():
    result = runner.invoke(
        app, [*SMALL, "--train", "--every", "5", "--lr", "0.1", "--json"], env=ENV
    )
    assert result.exit_code == EXIT_OK, result.output
    doc = json.loads(result.stdout)
    assert doc["mode"] == "train" and doc["hparams"] == {"optimizer": "sgd", "lr": 0.1}
    assert "step 5: B_simple" in result.stderr
