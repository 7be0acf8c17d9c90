"""What every JSON file of a project folder may hold, checked when it is read.

Each reader here parses one file (engine.atomic.read_json), checks it against its schema (types, ranges, ids,
references between its own entries, paths that stay inside their folder) and returns the parsed document
unchanged: the on-disk format is the one ARCHITECTURE.md documents ("Project folder"). A wrong value is a
:class:`ProjectSchemaError` naming the file, the field, the problem and what to do, raised before anything
is written, so no command goes on with a half-understood file (a traceback, or an export that silently
loses masks). The schemas accept every file this version writes, and older layouts it still reads.

:func:`contained_path` and :func:`plain_name` guard the paths built from project data (image ids, relative
paths): a path never leaves its folder, by ``..``, an absolute path or a symlink.

Only pydantic's validators are used (strict: "7" is not a number, true is not an id); no torch.
"""

import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any, Literal, Optional

from typing_extensions import NotRequired, TypedDict

from engine.atomic import ProjectFileError, read_json


class ProjectSchemaError(ProjectFileError):
    """A project file holds a wrong value: ``<file>: <field>: <problem>. <what to do>``."""

    def __init__(self, path, field: str, problem: str, todo: str):
        self.path, self.field, self.problem, self.todo = Path(path), field, problem, todo
        super().__init__(f"{path}: {field}: {problem}. {todo}")


class UnsafePathError(ProjectFileError):
    """A path built from project data would leave its folder (``..``, an absolute path, a symlink)."""


# -- paths built from project data --------------------------------------------------------------------------
def path_problem(relative: str) -> Optional[str]:
    """Why ``relative`` cannot name a file inside a folder (None when it can): empty, absolute, a drive,
    ``..`` or a NUL character; both separators count, so a Windows path cannot escape either."""
    if not relative:
        return "is empty"
    if "\0" in relative:
        return "contains a NUL character"
    if PurePosixPath(relative).is_absolute() or PureWindowsPath(relative).anchor:
        return "is an absolute path; it must be relative to its folder"
    if ".." in relative.replace("\\", "/").split("/"):
        return "contains '..'; it must stay inside its folder"
    return None


# one file name: no separator of either system, drive colon or NUL, and not "." or ".." (checked by
# pydantic-core's own regex engine, without look-arounds, for the hundreds of thousands of masks of clusters.json)
PLAIN_NAME = r"^([^/\\\x00:.][^/\\\x00:]*|\.[^/\\\x00:.][^/\\\x00:]*|\.\.[^/\\\x00:]+)$"
NOT_A_PLAIN_NAME = "is not a plain file name (no '/', '\\', ':' or NUL, not '.' or '..')"


def name_problem(name: str) -> Optional[str]:
    """Why ``name`` cannot be one file name inside a folder (None when it can)."""
    if not name:
        return "is empty"
    return None if re.fullmatch(PLAIN_NAME, name) else NOT_A_PLAIN_NAME


def plain_name(name: str, what: str) -> str:
    """``name`` (an image id) when it is one plain file name, else :class:`UnsafePathError`."""
    problem = name_problem(name) if isinstance(name, str) else "is not a text string"
    if problem:
        raise UnsafePathError(f"{what} {name!r} {problem}. A project file (images.json) was edited or comes "
                              "from elsewhere: re-run `maskdistill run` to rebuild it")
    return name


def contained_path(folder: Path, relative: str, what: str) -> Path:
    """``folder / relative``, refused with :class:`UnsafePathError` when it would leave ``folder`` (``..``,
    an absolute path, or a symlink on the way that points elsewhere); ``folder`` itself may be a symlink."""
    problem = path_problem(relative) if isinstance(relative, str) else "is not a text string"
    target = Path(folder) / relative if problem is None else None
    if target is not None:
        root = Path(folder).resolve()
        try:
            target.parent.resolve().relative_to(root)
        except ValueError:
            problem = f"leads out of {root} through a symlink"
    if problem:
        raise UnsafePathError(f"{what} {relative!r} {problem}; nothing was written there. Check the project's "
                              "images.json (re-run `maskdistill run` to rebuild it)")
    assert target is not None  # no problem: the path was built
    return target


# -- field types ----------------------------------------------------------------------------------------------
def _checked(problem_of):
    from pydantic import AfterValidator

    def check(value: str) -> str:
        problem = problem_of(value)
        if problem:
            raise ValueError(problem)
        return value
    return AfterValidator(check)


def _types() -> dict:
    from pydantic import Field

    return {
        "Count": Annotated[int, Field(ge=0)],
        "PositiveInt": Annotated[int, Field(ge=1)],
        "Name": Annotated[str, Field(pattern=PLAIN_NAME)],
        "RelativePath": Annotated[str, _checked(path_problem)],
        "Colour": Annotated[list[Annotated[int, Field(ge=0, le=255)]], Field(min_length=3, max_length=3)],
    }


@functools.cache
def _adapters() -> dict:
    """One pydantic TypeAdapter per file, built on first use (about 0.1 s; importing this module is free)."""
    from pydantic import ConfigDict, TypeAdapter, with_config

    t = _types()
    Count, PositiveInt, Name, RelativePath, Colour = (t[k] for k in ("Count", "PositiveInt", "Name",
                                                                     "RelativePath", "Colour"))
    # unknown fields are accepted (the caller keeps the document as read); "ignore" only spares copying them
    strict = with_config(ConfigDict(strict=True, extra="ignore"))

    @strict
    class ImageEntry(TypedDict):
        image_id: Name
        relative_path: RelativePath
        width: PositiveInt
        height: PositiveInt
        coco_id: PositiveInt
        masks: NotRequired[Count]
        plane: NotRequired[Optional[Count]]
        feature_key: NotRequired[str]
        pixel_hash: NotRequired[str]
        stamp: NotRequired[list]

    @strict
    class ClusterMask(TypedDict):
        image_id: Name
        index: Count
        cluster: Count
        key: NotRequired[str]  # missing in files written before masks had keys
        score: NotRequired[float]
        confidence: NotRequired[float]

    @strict
    class Cluster(TypedDict):
        id: Count
        name: NotRequired[str]
        size: NotRequired[Count]
        representatives: NotRequired[list[list]]

    @strict
    class Clusters(TypedDict):
        id: NotRequired[Optional[str]]
        k: NotRequired[Count]
        suggested_k: NotRequired[Count]
        k_stands_out: NotRequired[bool]
        silhouettes: NotRequired[dict[str, float]]
        masks: list[ClusterMask]
        clusters: list[Cluster]

    @strict
    class CategoryItem(TypedDict):
        id: PositiveInt
        name: str
        discarded: NotRequired[Optional[Literal["background", "ignore"]]]
        merged_into: NotRequired[Optional[PositiveInt]]
        colour: NotRequired[Optional[Colour]]
        cluster: NotRequired[Optional[Count]]
        user_named: NotRequired[bool]
        to_review: NotRequired[bool]

    @strict
    class Categories(TypedDict):
        clustering: NotRequired[Optional[str]]
        categories: list[CategoryItem]

    @strict
    class Assignments(TypedDict):
        version: NotRequired[Literal[2]]
        by_mask: dict[str, PositiveInt]

    @strict
    class FilteringMask(TypedDict):
        image_id: Name
        index: Count
        kept: bool

    @strict
    class Filtering(TypedDict):
        masks: list[FilteringMask]

    @strict
    class Stamp(TypedDict):
        clustering: Optional[str]
        images: NotRequired[Count]
        user_objects: NotRequired[dict[str, list[Count]]]  # image id -> positions of the user's objects

    @strict
    class Backbone(TypedDict):
        name: str
        default_input_size: PositiveInt

    @strict
    class Weights(TypedDict):
        identity: str

    @strict
    class ProjectConfig(TypedDict):
        schema_version: int
        image_root: Annotated[str, _checked(lambda v: "is empty" if not v else None)]
        config: dict[str, Any]
        backbone: Backbone
        weights: Weights

    return {"images": TypeAdapter(list[ImageEntry]), "clusters": TypeAdapter(Clusters),
            "categories": TypeAdapter(Categories), "assignments": TypeAdapter(Assignments),
            "legacy_assignments": TypeAdapter(dict[str, PositiveInt]), "filtering": TypeAdapter(Filtering),
            "stamp": TypeAdapter(Stamp), "project": TypeAdapter(ProjectConfig)}


# -- errors -------------------------------------------------------------------------------------------------
_PROBLEMS = {"int_type": "must be a whole number", "int_from_float": "must be a whole number",
             "string_type": "must be a text string", "bool_type": "must be true or false",
             "float_type": "must be a number", "list_type": "must be a list", "dict_type": "must be a JSON object",
             "missing": "is missing", "too_short": "must have {min_length} values",
             "too_long": "must have {max_length} values", "greater_than_equal": "must be at least {ge}",
             "less_than_equal": "must be at most {le}", "finite_number": "must be a finite number",
             "literal_error": "must be {expected}", "string_pattern_mismatch": NOT_A_PLAIN_NAME}


def _field_name(location: tuple, top: str = "") -> str:
    """pydantic's error location as the file's field, e.g. ``categories[0].cluster`` or ``[3].coco_id``."""
    text = top
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the whole file"


def _shown(value) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem(error: Mapping) -> str:
    kind = error["type"]
    if kind in _PROBLEMS:
        problem = _PROBLEMS[kind].format(**(error.get("ctx") or {}))
    else:  # value_error (the path checks above), ...
        message = error["msg"].removeprefix("Value error, ")
        problem = message[0].lower() + message[1:]
    return problem if kind == "missing" else f"{problem}, found {_shown(error['input'])}"


def _read(path: Path, todo: str):
    """The parsed file; unreadable or not JSON: ProjectFileError naming it, ending with ``todo``."""
    return read_json(path, hint=todo[0].lower() + todo[1:])


def _validate(kind: str, document, path: Path, todo: str, top: str = ""):
    from pydantic import ValidationError

    try:
        _adapters()[kind].validate_python(document)
    except ValidationError as error:
        first = error.errors()[0]
        raise ProjectSchemaError(path, _field_name(first["loc"], top), _problem(first), todo) from None
    return document


def _unique(path: Path, values, field: str, todo: str) -> None:
    seen: dict = {}
    for index, value in enumerate(values):
        if value in seen:
            raise ProjectSchemaError(path, f"[{index}].{field}", f"{_shown(value)} is used twice (also by "
                                                                 f"[{seen[value]}])", todo)
        seen[value] = index


# -- what to do ------------------------------------------------------------------------------------------------
def rerun_hint(root: Path) -> str:
    """The `run` command that rebuilds a project's derived files, with its image folder when project.json
    names one."""
    folder = "IMAGE_FOLDER"
    try:
        stored = read_json(Path(root) / "project.json")
        if isinstance(stored, dict) and isinstance(stored.get("image_root"), str) and stored["image_root"]:
            folder = stored["image_root"]
    except (OSError, ValueError):
        pass
    return f"maskdistill run {folder} --project {root}"


def _rebuild(path: Path) -> str:
    return f"Run `{rerun_hint(path.parent)}` again: it rebuilds this file from the image folder"


def _user_file(path: Path, deleting: str) -> str:
    return (f"Correct that value, restore the file from {path.parent / 'backups'} if there is a copy, or delete "
            f"it ({deleting})")


# -- the readers -----------------------------------------------------------------------------------------------
def read_images(path: Path) -> list:
    """images.json: a non-empty list of images, each with a plain ``image_id``, a ``relative_path`` inside
    the image folder, sizes and a COCO id >= 1; ids, COCO ids and paths each used once."""
    path = Path(path)
    todo = _rebuild(path)
    entries = _validate("images", _read(path, todo), path, todo)
    if not entries:
        raise ProjectSchemaError(path, "the whole file", "lists no images", todo)
    _unique(path, [e["image_id"] for e in entries], "image_id", todo)
    _unique(path, [e["coco_id"] for e in entries], "coco_id", todo)
    _unique(path, [(e["relative_path"], e.get("plane")) for e in entries], "relative_path", todo)
    return entries


def check_feature_keys(path: Path, entries: list) -> None:
    """For the commands that read the cached features (distill, predict, cache): every images.json entry
    names its features (``feature_key``, which older layouts and hand-made files may lack)."""
    path = Path(path)
    for index, entry in enumerate(entries):
        if not entry.get("feature_key"):
            raise ProjectSchemaError(path, f"[{index}].feature_key", "is missing or empty (the image's cached "
                                     "features cannot be found without it)", _rebuild(path))


def read_clusters(path: Path) -> dict:
    """clusters.json (or clusters.previous.json): masks and clusters; every mask's cluster is listed and
    clusters are numbered 0, 1, ... in order (the re-binding indexes them so)."""
    path = Path(path)
    todo = _rebuild(path)
    clusters = _validate("clusters", _read(path, todo), path, todo)
    for j, cluster in enumerate(clusters["clusters"]):
        if cluster["id"] != j:
            raise ProjectSchemaError(path, f"clusters[{j}].id", f"must be {j} (clusters are numbered in order), "
                                                                f"found {cluster['id']}", todo)
    for i, mask in enumerate(clusters["masks"]):
        if mask["cluster"] >= len(clusters["clusters"]):
            raise ProjectSchemaError(path, f"masks[{i}].cluster", f"names cluster {mask['cluster']}, which the "
                                     f"file does not list ({len(clusters['clusters'])} clusters)", todo)
    return clusters


def read_categories(path: Path) -> dict:
    """categories.json: categories with unique ids >= 1, a discard mode of "background" / "ignore" or null,
    merges into categories the table lists (no cycles), colours of three values 0-255."""
    path = Path(path)
    todo = _user_file(path, "you then start again from the generated categories, losing names, merges and discards")
    document = _validate("categories", _read(path, todo), path, todo)
    items = document["categories"]
    _unique(path, [c["id"] for c in items], "id", todo)
    ids = {c["id"] for c in items}
    merged = {c["id"]: c.get("merged_into") for c in items}
    for index, item in enumerate(items):
        target = item.get("merged_into")
        field = f"categories[{index}].merged_into"
        if target is not None and target not in ids:
            raise ProjectSchemaError(path, field, f"names category {target}, which the table does not list", todo)
        chain = [item["id"]]
        while merged.get(chain[-1]) is not None:
            chain.append(merged[chain[-1]])
            if chain[-1] in chain[:-1]:
                raise ProjectSchemaError(path, field, "categories are merged into each other in a cycle ("
                                         + " -> ".join(str(i) for i in chain) + ")", todo)
    return document


def read_assignments(path: Path) -> dict:
    """assignments.json: ``{"version": 2, "by_mask": {mask key: category id >= 1}}``, or the older layout
    ``{"image_id/index": category id}``, still accepted so that such a file never blocks a project (its entries
    match no mask: engine.state.corrections.is_positional_key). Returns the document as stored."""
    path = Path(path)
    todo = _user_file(path, "split parts and pinned masks then go back to their clusters' categories")
    document = _read(path, todo)
    if "version" in document or "by_mask" in document:
        return _validate("assignments", document, path, todo)
    return _validate("legacy_assignments", document, path, todo)


def read_filtering(path: Path) -> dict:
    """filtering.json: per mask its image, index and whether the filter kept it."""
    path = Path(path)
    todo = f"Run `maskdistill distill --project {path.parent}` to recompute it"
    return _validate("filtering", _read(path, todo), path, todo)


def read_predictions_stamp(path: Path) -> dict:
    """predictions/stamp.json: the clustering the predictions were made for, and where the user's objects lie."""
    path = Path(path)
    root = path.parent.parent
    todo = (f"Run `maskdistill predict --project {root}` to make the predictions again, or delete "
            f"{path.parent} to export the clustered proposals")
    return _validate("stamp", _read(path, todo), path, todo)


def check_project_config(path: Path, config: dict) -> dict:
    """project.json (already parsed, schema version checked): image root, run settings, backbone, weights."""
    path = Path(path)
    todo = (f"Restore it from a copy, or run `maskdistill run IMAGE_FOLDER --project {path.parent}` to write it "
            "again")
    return _validate("project", config, path, todo)


def read_evaluation(path: Path) -> dict:
    """evaluation.json: scores per source; only its top level is read back (merged with new scores)."""
    path = Path(path)
    return read_json(path, dict, f"delete it: `maskdistill evaluate --project {path.parent}` writes it again")


# -- whole-project checks --------------------------------------------------------------------------------------
def check_user_files(root: Path) -> None:
    """Check the user's own files (categories.json, assignments.json) before a command starts its work, so a
    wrong value stops it before anything is rewritten."""
    root = Path(root)
    if (root / "categories.json").exists():
        read_categories(root / "categories.json")
    if (root / "assignments.json").exists():
        read_assignments(root / "assignments.json")


def derived_file_notes(root: Path) -> list:
    """For `run`: images.json and clusters.json are rebuilt by the run itself, so a damaged one is not an
    error but replaced; one line per such file, saying so (the run treats it as absent)."""
    notes = []
    for name, reader, consequence in (("images.json", read_images, "COCO image ids are numbered afresh"),
                                      ("clusters.json", read_clusters, "your categories keep the cluster "
                                                                       "numbers they name: check them")):
        path = Path(root) / name
        try:
            if path.exists():
                reader(path)
        except ProjectSchemaError as error:
            notes.append(f"{path}: {error.field}: {error.problem}; this run rebuilt it ({consequence})")
        except ProjectFileError as error:
            notes.append(f"{error}; this run rebuilt it ({consequence})")
    return notes


def read_derived_or_none(reader, path: Path):
    """``reader(path)`` for a file the caller recomputes anyway: None when it is missing or damaged."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return reader(path)
    except (ProjectFileError, OSError):
        return None


__all__ = ["ProjectSchemaError", "UnsafePathError", "check_feature_keys", "check_project_config", "check_user_files",
           "contained_path", "derived_file_notes", "name_problem", "path_problem", "plain_name",
           "read_assignments", "read_categories", "read_clusters", "read_derived_or_none", "read_evaluation",
           "read_filtering", "read_images", "read_predictions_stamp", "rerun_hint"]
