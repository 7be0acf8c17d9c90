"""The test-time views a run can add (RunConfig.second_scale, mirror_view): the whole method again on the same
images seen another way, each in a project folder of its own under the run's, its final objects added over the
first run's as overlapping objects (engine.orchestration.overlapping). One owner for which views a setting asks for,
where each lives and how its images relate to the first run's; torch-free, as the messages about them use it.
"""
from __future__ import annotations

from dataclasses import dataclass

SECOND_SCALE, MIRRORED_VIEW, MIRRORED_SECOND_SCALE = "second scale", "mirrored view", "mirrored second scale"


@dataclass(frozen=True)
class View:
    name: str
    folder: str  # its project, under the run's
    at_second_scale: bool  # input size RunConfig.second_scale, else the run's
    mirrored: bool  # images read mirrored left to right: matched to the first run's by file stamp, not pixel hash
    options: str  # the run options that make it (for the message when it is missing)
    stages: str  # what its stages are called after ("<stage> <stages>"); "{px}" the second scale


# in the order their objects are added: a later view adds only what no earlier one (nor the first run) holds
VIEWS = (
    View(SECOND_SCALE, "second_scale", True, False, "--second-scale", "at {px} px"),
    View(MIRRORED_VIEW, "mirror_view", False, True, "--mirror-view", "(mirrored)"),
    View(MIRRORED_SECOND_SCALE, "mirror_second_scale", True, True, "--second-scale and --mirror-view",
         "at {px} px (mirrored)"),
)


def asked_views(config: dict) -> list[View]:
    """The views a run's settings (RunConfig as a dict: project.json's ``config``) ask for: the second scale,
    the mirrored view, and with both the mirrored view at the second scale too."""
    second, mirror = config.get("second_scale") is not None, bool(config.get("mirror_view"))
    return [view for view in VIEWS if (second or not view.at_second_scale) and (mirror or not view.mirrored)]


def view_options(name: str) -> str:
    return next((view.options for view in VIEWS if view.name == name), "the same options")
