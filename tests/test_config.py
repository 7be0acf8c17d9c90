"""A run's settings are described once (engine.orchestration.config): RunConfig's field metadata gives the
validation, the CLI's help / choices / defaults and the plugin's form; describing them needs no torch."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from engine.cli import FILTER_SETTINGS, RUN_SETTINGS, build_parser
from engine.orchestration.config import RunConfig, allowed_range, setting

ROOT = Path(__file__).resolve().parents[1]


def loaded_after(code: str) -> str:
    """'True' or 'False': whether torch is loaded after running ``code`` in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint('torch' in sys.modules)"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_describing_and_checking_a_run_does_not_load_torch():
    assert loaded_after("import engine.orchestration.config as c\nc.RunConfig(num_classes=3).check()\n"
                        "c.setting('proposals')") == "False"
    assert loaded_after("from engine.cli import build_parser\nbuild_parser()") == "False"


def test_the_run_panel_is_built_without_torch():
    code = ("from qtpy.QtWidgets import QApplication\napp = QApplication([])\n"
            "from maskdistill_napari._run_panel import RunPanel\n"
            "panel = RunPanel(None, on_finished=print, on_open=print)\nassert panel.config().proposals\n")
    assert loaded_after(code) == "False"


def test_each_name_list_has_one_owner():
    from engine.device import PRECISIONS
    from engine.method.backbones import BACKBONES
    from engine.method.names import EMBEDDINGS, PROPOSAL_CHOICES
    from engine.method.proposals import PROPOSAL_METHODS

    assert setting("proposals")["choices"] is PROPOSAL_CHOICES and PROPOSAL_CHOICES[1:] == PROPOSAL_METHODS
    assert setting("embedding")["choices"] is EMBEDDINGS
    assert setting("precision")["choices"] is PRECISIONS
    assert setting("backbone")["choices"] == tuple(BACKBONES)
    assert setting("proposals")["default"] == RunConfig().proposals == RunConfig.proposals == "auto"


def test_every_setting_has_a_label_and_one_sentence_of_help():
    for spec in fields(RunConfig):
        info = setting(spec.name)
        assert info["label"] and info["help"].endswith("."), spec.name
        assert ". " not in info["help"], spec.name
    with pytest.raises(KeyError, match="no setting 'colour'"):
        setting("colour")


@pytest.mark.parametrize("changes, message", [
    ({"input_size": 27}, "input size must be between 28 and 2048 pixels, not 27"),
    ({"max_masks": 21}, "masks per image must be between 1 and 20, not 21"),
    ({"num_classes": 0}, "number of classes must be at least 1, not 0"),
    ({"filter_percentile": 100}, r"filter percentile must be in \[0, 100\), not 100"),
    ({"filter_threshold": 1.5}, "filter threshold must be between 0 and 1, not 1.5"),
    ({"proposals": "magic"}, "proposals must be one of auto, ncut, split, seed, segments, dense, not 'magic'"),
    ({"precision": "float16"}, "precision must be one of auto, float32, bfloat16, not 'float16'"),
    ({"batch_size": 0}, "batch size must be at least 1, not 0"),
])
def test_check_refuses_what_the_metadata_excludes(changes, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**changes).check()


def test_check_accepts_the_edges_and_settings_left_to_the_engine():
    RunConfig(input_size=2048, max_masks=20, filter_percentile=99.9, filter_threshold=1, object_size=1,
              tile_size=64, self_training_rounds=0).check()
    RunConfig(input_size=None, num_classes=None, object_size=None, tile_size=None).check()
    RunConfig(backbone="vit_small_patch14_dinov2.lvd142m").check()  # a timm hub name, beyond the listed choices
    assert allowed_range(setting("filter_percentile")) == "in [0, 100)"
    assert allowed_range(setting("seed")) is None


def words(text: str) -> str:
    return " ".join(text.split())


def test_the_cli_options_are_the_settings(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    shown = words(capsys.readouterr().out)
    for _, name, _ in RUN_SETTINGS + FILTER_SETTINGS:
        assert words(setting(name)["help"]) in shown, name
    assert "--input-size PX Shorter image side" in shown and "Between 28 and 2048 pixels." in shown
    assert "{" + ",".join(setting("embedding")["choices"]) + "}" in shown

    args = build_parser().parse_args(["run", "images", "--project", "p"])
    assert RunConfig(**{name: getattr(args, name) for _, name, _ in RUN_SETTINGS}) == RunConfig()
    assert all(getattr(args, name) is None for _, name, _ in FILTER_SETTINGS)  # unset: the project's values
    args = build_parser().parse_args(["run", "images", "-p", "p", "--masks-per-image", "5", "--no-distill", "-k",
                                      "4", "--self-training", "2"])
    assert (args.max_masks, args.distill, args.num_classes, args.self_training_rounds) == (5, False, 4, 2)
