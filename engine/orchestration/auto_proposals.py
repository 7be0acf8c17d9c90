"""``--proposals auto``: the proposal method (and object size) a folder gets, chosen before any network runs
from a classical reading of a few of its images (engine.method.crowding), since the feature pass itself
depends on the object size."""
from __future__ import annotations

from dataclasses import replace

from engine.io.images import ImageError, load_image
from engine.method.crowding import ProposalChoice, choose_proposals, read_crowding, sample_evenly
from engine.orchestration.config import RunConfig


def resolve_proposals(config: RunConfig, discovery) -> tuple[RunConfig, ProposalChoice | None]:
    """``config`` with ``auto`` replaced by the method chosen for the folder of ``discovery`` (dense with the
    object size read from the images, unless the config gives one; else segments), and the choice; a config
    naming its method comes back as it is, with None. An object size given with ``auto`` means dense."""
    if config.proposals != "auto":
        return config, None
    readings = []
    for record in sample_evenly(discovery.images):
        try:
            image = load_image(record.path, plane=record.plane, options=config.image_options)
        except (ImageError, OSError):
            continue  # the run names the file when it reaches it
        readings.append(read_crowding(image))
    choice = choose_proposals(readings)
    if config.object_size is not None:
        choice = replace(choice, method="dense", object_size=config.object_size)
    return replace(config, proposals=choice.method, object_size=choice.object_size), choice
