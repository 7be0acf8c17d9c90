"""Find and read the images of a user's folder without letting one bad file abort a run.

:func:`discover_images` lists a folder and checks each candidate's *header* only (cheap): a file that
cannot be used is put in ``Discovery.skipped`` with a reason the run report can show. :func:`load_image`
fully decodes one image to RGB ``uint8`` (H, W, 3) and raises :class:`ImageError` on anything wrong.
TIFFs go through tifffile (16-bit RGB, float, multichannel and stacks); everything else, and the TIFF kinds
tifffile does not decode (palette, CMYK, JPEG-in-TIFF without imagecodecs), goes through Pillow.

Microscopy (:class:`ImageOptions`, or the same keyword arguments of :func:`load_image`):

* ``channels``: which stored channels become the network's RGB, 0-based: one channel is replicated to grey
  RGB, two fill R and G (B stays 0), three fill R, G, B. The channel axis is TIFF samples (S) or an ImageJ /
  OME / tifffile ``C`` axis; a file with unnamed extra pages (tifffile ``Q``/``I``) has them as planes.
  With ``channels`` every chosen channel is stretched on its own (8-bit data too). ``None`` (default)
  reads the image as stored: gray, RGB or RGBA only; 8-bit data is never stretched and higher bit depths
  get one joint stretch over R, G, B (colour balance kept), so an ordinary photo reads exactly as it is.
* ``percentiles``: the (low, high) percentiles mapped to 0 and 255, default (1, 99.8) like Cellpose and
  napari users expect, so one hot pixel cannot flatten the image as a min-max would. Estimated on a strided
  subsample of about a million pixels; a constant channel becomes 0.
* ``plane``: which plane of a stack (Z, T, unnamed pages, appended series; flattened in stored order) to
  read. Without it a stack is refused; ``discover_images(..., planes=True)`` lists one record per plane.

Known limit: Pillow reads 16-bit *RGB* PNGs as 8-bit (high byte), so those are not rescaled; 16-bit
grayscale PNGs and all 16-bit TIFFs are. EXIF orientation is applied to non-TIFF files only (tifffile
ignores the TIFF Orientation tag, and the header check and the decode must agree on width/height).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import operator
import os
import threading
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError

SUPPORTED_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")  # case-insensitive
MAX_IMAGE_PIXELS = 150_000_000  # documented limit; bigger images are skipped with a reason saying it

# Pillow's own bomb check would fire with a confusing message; ours runs first with the same limit.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_TIFF_DATA_PHOTOMETRIC = (0, 1, 2)  # MINISWHITE, MINISBLACK, RGB: tifffile gives the pixel values
_HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_SUBSAMPLE_TARGET = 1_000_000  # pixels used to estimate the percentiles
DEFAULT_PERCENTILES = (1.0, 99.8)  # low/high percentiles stretched to 0..255 (Cellpose's normalisation)
_FIX = "Re-export or remove the file."


class ImageError(ValueError):
    """An image that cannot be used; str() names the file and the problem and what to do."""

    def __init__(self, path, reason):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class ImageOptions:
    """How to turn a stored image into the network's RGB (see the module docstring); validated on creation.

    ``channels``: None (as stored) or 1-3 channel indices; ``percentiles``: (low, high) in 0..100;
    ``planes``: discovery lists one record per plane of a stack instead of skipping it; ``mirrored``: every
    image read mirrored left to right (a run's mirrored view, RunConfig.mirror_view: a project of its own; out of
    the repr, so a file's stamp, engine.orchestration.image_step.file_stamp, is the same in both projects).
    """

    channels: tuple | None = None
    percentiles: tuple = DEFAULT_PERCENTILES
    planes: bool = False
    mirrored: bool = field(default=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "channels", _check_channels(self.channels))
        object.__setattr__(self, "percentiles", _check_percentiles(self.percentiles))
        object.__setattr__(self, "planes", bool(self.planes))
        object.__setattr__(self, "mirrored", bool(self.mirrored))

    def to_dict(self) -> dict:
        """JSON-ready (project.json)."""
        return {"channels": None if self.channels is None else list(self.channels),
                "percentiles": list(self.percentiles), "planes": self.planes, "mirrored": self.mirrored}

    @classmethod
    def from_dict(cls, data: dict | None) -> ImageOptions:
        """From :meth:`to_dict`; missing keys (an older project.json) take the defaults."""
        data = data or {}
        return cls(channels=data.get("channels"), percentiles=data.get("percentiles") or DEFAULT_PERCENTILES,
                   planes=bool(data.get("planes", False)), mirrored=bool(data.get("mirrored", False)))


def _check_channels(channels):
    """None, or a tuple of 1-3 non-negative ints (an int is one channel); ValueError otherwise."""
    if channels is None:
        return None
    if isinstance(channels, (int, np.integer)) and not isinstance(channels, bool):
        channels = (channels,)
    try:
        out = tuple(int(c) for c in channels)
        ok = all(float(c) == i and not isinstance(c, bool) for c, i in zip(channels, out))
    except (TypeError, ValueError):
        ok = False
    if not ok or not 1 <= len(out) <= 3 or min(out) < 0:
        raise ValueError(f"channels must be 1 to 3 channel indices counted from 0 (e.g. (0,) or (1, 0)), "
                         f"got {channels!r}")
    return out


def _check_percentiles(percentiles):
    """(low, high) floats with 0 <= low < high <= 100; ValueError otherwise."""
    try:
        lo, hi = (float(v) for v in percentiles)
    except (TypeError, ValueError):
        raise ValueError(f"percentiles must be two numbers (low, high), got {percentiles!r}") from None
    if not 0.0 <= lo < hi <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles!r}")
    return lo, hi


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: size (after EXIF orientation), channels a caller can choose from, planes."""

    width: int
    height: int
    channels: int
    planes: int


@dataclass(frozen=True)
class ImageRecord:
    image_id: str  # "img_" + 12 hex of sha1(relative_path[, plane]): stable across runs and machines
    path: Path  # absolute path
    relative_path: str  # posix path relative to the folder root (the file, also for a plane of a stack)
    width: int  # after EXIF orientation
    height: int
    plane: int | None = None  # plane of a stack (discover_images(planes=True)); None for a 2-D image


@dataclass(frozen=True)
class SkippedFile:
    relative_path: str
    reason: str


@dataclass
class Discovery:
    root: Path
    images: list  # list[ImageRecord], sorted by relative_path
    skipped: list  # list[SkippedFile]


# ----------------------------------------------------------------------------------------- ids, hashes


def image_id_for(relative_path: str, plane: int | None = None) -> str:
    """Id from the relative path (and plane of a stack); NFC-normalised so a folder copied from macOS (NFD
    names) keeps its ids. A 2-D image (plane None) has the same id with or without ``planes=True``."""
    key = unicodedata.normalize("NFC", relative_path)
    if plane is not None:
        key += f"\0plane={int(plane)}"  # NUL cannot occur in a path: no collision with another file's id
    return "img_" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def pixel_hash(image: np.ndarray) -> str:
    """sha256 of shape, dtype and pixels: a re-saved identical image hits the feature cache."""
    arr = np.ascontiguousarray(image)
    h = hashlib.sha256(f"{arr.shape}|{arr.dtype.str}|".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------ cheap file checks


def _check_file(path: Path) -> bytes:
    """Existence, emptiness and permission problems, each with its own message; returns the magic bytes."""
    if path.is_symlink() and not path.exists():
        raise ImageError(path, f"broken symbolic link (target {os.readlink(path)} does not exist). "
                               "Fix or remove the link.")
    if not path.exists():
        raise ImageError(path, "file not found. It may have been moved or deleted.")
    if not path.is_file():
        raise ImageError(path, "not a regular file.")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except PermissionError:
        raise ImageError(path, "cannot read file (permission denied). Check the file's permissions.") from None
    except OSError as exc:
        raise ImageError(path, f"cannot read file ({exc.strerror or exc}). Check the disk or copy it again.") from None
    if not magic:
        raise ImageError(path, f"empty file (0 bytes). {_FIX}")
    return magic


def _check_pixels(path: Path, width: int, height: int) -> None:
    """Reject before decoding: a huge image would exhaust memory, and the limit is documented."""
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(path, f"image too large: {width}x{height} = {width * height:,} pixels exceeds the limit "
                               f"of MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS:,} pixels. Downsample or tile it.")


def _stack_error(path: Path, planes: int) -> ImageError:
    return ImageError(path, f"2-D images only unless planes are asked for: {path.name} has {planes} "
                            "pages/planes. Use --planes (Python: planes=True / plane=k) to process each plane "
                            "as an image, or split the stack (Fiji: Image > Stacks > Stack to Images) or save "
                            "a projection.")


def _channel_error(path: Path, channels: int) -> ImageError:
    return ImageError(path, f"unsupported channel count: {channels} channels; only 1 (gray), 3 (RGB) or 4 "
                            "(RGBA) are read as stored. Choose up to 3 of them with --channels (e.g. "
                            "--channels 0 or --channels 1,0), or save a single channel or an RGB composite.")


def _check_request(path: Path, info: ImageInfo, channels, plane) -> None:
    """The file can give what the caller asks for: a plane of a stack (or a 2-D image), those channels."""
    if plane is None:
        if info.planes > 1:
            raise _stack_error(path, info.planes)
    elif not 0 <= plane < info.planes:
        raise ImageError(path, f"plane {plane} requested, but {path.name} has {info.planes} "
                               f"plane{'s' if info.planes != 1 else ''} (0-{info.planes - 1}).")
    if channels is None:
        if info.channels not in (1, 3, 4):
            raise _channel_error(path, info.channels)
    elif max(channels) >= info.channels:
        n = info.channels
        hint = (f" Its {info.planes} planes may be channels stored as pages: save it with a channel axis "
                "(ImageJ hyperstack or tifffile metadata={'axes': 'CYX'}).") if info.planes > 1 and n == 1 else ""
        raise ImageError(path, f"channel {max(channels)} requested, but {path.name} has {n} "
                               f"channel{'s' if n != 1 else ''} (0-{n - 1}). Choose channels between 0 and "
                               f"{n - 1}.{hint}")


# ------------------------------------------------------------------------------------------------ TIFF


@dataclass(frozen=True)
class _TiffLayout:
    keep: list  # (size, axis) pairs of series 0: singleton axes dropped, but never Y or X (1x1 images work)
    height: int
    width: int
    channels: int  # size of the S or C axis, 1 without one
    planes: int  # series-0 planes + pages of further full-resolution series
    series_planes: int  # planes of series 0: product of its axes other than Y, X, S, C, in stored order
    lead: tuple | None  # (shape, axes) indexing series 0's pages (C order); None: pages not addressable
    extra: tuple  # (series index, page index) of each plane after series 0's

    @property
    def info(self) -> ImageInfo:
        return ImageInfo(self.width, self.height, self.channels, self.planes)


def _tiff_layout(tif: tifffile.TiffFile, path: Path) -> _TiffLayout:
    """Layout of series 0 (and appended series, which count as planes); rejects odd layouts and huge images.

    S/C is the channel axis; any other axis longer than 1 (Z, T, tifffile's unnamed Q/I) counts as planes,
    and so do further full-resolution series (e.g. pages appended one by one).
    """
    series = tif.series[0]
    keep = [(n, a) for n, a in zip(series.shape, series.axes) if n > 1 or a in "YX"]
    chans = [n for n, a in keep if a in "SC"]
    series_planes = math.prod(n for n, a in keep if a not in "YXSC")
    extra = tuple((i, k) for i, s in enumerate(tif.series[1:], 1) if not s.keyframe.is_reduced
                  for k in range(len(s.pages)))
    if len(chans) > 1 or [a for _, a in keep if a in "YX"] != ["Y", "X"]:
        raise ImageError(path, f"unsupported TIFF layout {series.axes} {series.shape}. Save it as a 2-D "
                               "gray, RGB or multichannel image, or a stack of them.")
    height, width = (n for n, a in keep if a in "YX")
    _check_pixels(path, width, height)
    return _TiffLayout(keep, height, width, chans[0] if chans else 1, series_planes + len(extra),
                       series_planes, _page_index(series), extra)


def _page_index(series):
    """(shape, axes) of the page dimensions of ``series`` (pages in C order), or None if they do not add up."""
    try:
        full = list(zip(series.get_shape(False), series.get_axes(False)))
        page_axes = series.keyframe.axes
    except Exception:
        return None
    if set(page_axes) - set("YXS"):
        return None
    lead = [(n, a) for n, a in full if a not in "YXS"]
    if math.prod(n for n, _ in lead) != len(series.pages) or [a for _, a in lead].count("C") > 1:
        return None
    return tuple(n for n, _ in lead), "".join(a for _, a in lead)


def _tiff_info(path: Path):
    """ImageInfo from the TIFF header via tifffile, or None if tifffile cannot parse it."""
    try:
        with tifffile.TiffFile(path) as tif:
            return _tiff_layout(tif, path).info
    except ImageError:
        raise
    except Exception:
        return None


def _arrange(arr: np.ndarray, pairs) -> np.ndarray:
    """Array with (size, axis) ``pairs`` -> (planes, Y, X[, C]): plane axes in stored order, channel last."""
    axes = [a for _, a in pairs]
    arr = arr.reshape([n for n, _ in pairs])
    order = ([i for i, a in enumerate(axes) if a not in "YXSC"] + [axes.index("Y"), axes.index("X")]
             + [i for i, a in enumerate(axes) if a in "SC"])
    arr = arr.transpose(order)
    tail = 3 if any(a in "SC" for a in axes) else 2
    return arr.reshape((-1,) + arr.shape[-tail:])


def _page_pixels(arr: np.ndarray, axes: str) -> np.ndarray:
    """One page (Y, X), (Y, X, S) or (S, Y, X) -> (Y, X[, S])."""
    pairs = [(n, a) for n, a in zip(arr.shape, axes) if n > 1 or a in "YX"]
    return _arrange(arr, pairs)[0]


def _read_plane(tif: tifffile.TiffFile, layout: _TiffLayout, plane: int | None, path: Path) -> np.ndarray:
    """(Y, X[, C]) of one plane, decoding only that plane's pages where the file allows it."""
    series = tif.series[0]
    if plane is None or (layout.planes == 1 and plane == 0):
        return _arrange(series.asarray(), layout.keep)[0]
    if plane >= layout.series_planes:  # a page of an appended series
        index, key = layout.extra[plane - layout.series_planes]
        arr = _page_pixels(tif.asarray(series=index, key=key), tif.series[index].keyframe.axes)
        if arr.shape[:2] != (layout.height, layout.width) or (arr.shape[2] if arr.ndim == 3 else 1) != layout.channels:
            raise ImageError(path, f"plane {plane} has shape {arr.shape}, unlike the first plane "
                                   f"({layout.height}, {layout.width}). {_FIX}")
        return arr
    if layout.lead is None:  # pages cannot be read one by one: decode the series, keep one plane
        return _arrange(series.asarray(), layout.keep)[plane]
    shape, axes = layout.lead
    free = [i for i, a in enumerate(axes) if a != "C"]
    position = np.unravel_index(plane, [shape[i] for i in free]) if free else ()
    base = [0] * len(shape)
    for i, v in zip(free, position):
        base[i] = int(v)
    channel_axis = axes.find("C")
    keys = []
    for c in range(shape[channel_axis] if channel_axis >= 0 else 1):
        if channel_axis >= 0:
            base[channel_axis] = c
        keys.append(int(np.ravel_multi_index(base, shape)) if shape else 0)
    pages = [_page_pixels(tif.asarray(series=0, key=k), series.keyframe.axes) for k in keys]
    return pages[0] if channel_axis < 0 else np.stack(pages, axis=-1)


def _load_tiff(path: Path, plane: int | None = None, channels=None):
    """Pixel array (Y, X[, C]) via tifffile, or None when Pillow should decode it (palette, CMYK, ...)."""
    try:
        tif = tifffile.TiffFile(path)
    except Exception:
        return None
    with tif:
        layout = _tiff_layout(tif, path)
        _check_request(path, layout.info, channels, plane)
        photometric = tif.series[0].keyframe.photometric
        if photometric not in _TIFF_DATA_PHOTOMETRIC:
            return None
        try:
            arr = _read_plane(tif, layout, plane, path)
        except ImageError:
            raise
        except Exception as exc:
            return _TiffDecodeFailure(exc)
    return _invert(arr) if photometric == 0 else arr


class _TiffDecodeFailure:
    """tifffile could parse the header but not the data: try Pillow, and report tifffile's error if it fails too."""

    def __init__(self, exc):
        self.exc = exc


def _invert(arr: np.ndarray) -> np.ndarray:
    """MINISWHITE TIFFs store 0 as white; flip so bright means bright like every other image."""
    if arr.dtype == bool:
        return ~arr
    if np.issubdtype(arr.dtype, np.integer):
        return np.iinfo(arr.dtype).max - arr
    return -arr


# ---------------------------------------------------------------------------------------------- Pillow


def _open_pil(path: Path) -> Image.Image:
    """Image.open with our messages for 'not an image' and the bomb check (header only, lazy)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except UnidentifiedImageError:
        raise ImageError(path, "not an image, or a format that cannot be read (Pillow/tifffile could not "
                               "identify it). Remove it or convert it to PNG.") from None
    except Image.DecompressionBombError:
        w, h = _pil_bomb_size(path)
        _check_pixels(path, w, h)
        raise
    except Exception as exc:
        raise ImageError(path, f"truncated or corrupt image header (PIL: {exc}). {_FIX}") from None


def _pil_bomb_size(path: Path):
    """Size of an image Pillow refused as a bomb, read with the check off (header only)."""
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as img:
            return img.size
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _pil_frames(img: Image.Image) -> int:
    """Frame count; MPO (phone-camera JPEG with an extra preview/depth frame) counts as one image."""
    return 1 if img.format == "MPO" else getattr(img, "n_frames", 1)


def _pil_oriented_size(img: Image.Image, apply_exif: bool) -> tuple[int, int]:
    """(width, height) as load_image will return it: EXIF orientations 5-8 swap the sides."""
    width, height = img.size
    try:
        orientation = img.getexif().get(0x0112, 1) if apply_exif else 1
    except Exception:
        orientation = 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _pil_channels(img: Image.Image) -> int:
    """Channels of the array _pil_to_array gives: gray modes 1, everything else RGB (alpha dropped)."""
    return 1 if img.mode in ("1", "L", "LA") + _HIGH_BIT_MODES else 3


def _pil_header(path: Path, apply_exif: bool) -> ImageInfo:
    """Size after orientation, channels and frames (planes); rejects oversized images."""
    with _open_pil(path) as img:
        _check_pixels(path, *img.size)
        return ImageInfo(*_pil_oriented_size(img, apply_exif), _pil_channels(img), _pil_frames(img))


def _load_pil(path: Path, apply_exif: bool, plane: int | None = None, channels=None) -> np.ndarray:
    """Decode with Pillow (truncated data raises: LOAD_TRUNCATED_IMAGES stays off) to an array."""
    _check_request(path, _pil_header(path, apply_exif), channels, plane)
    with _open_pil(path) as img:
        try:
            if plane:
                img.seek(plane)
            img.load()
        except Exception as exc:
            raise ImageError(path, f"truncated or corrupt image data (PIL: {exc}). {_FIX}") from None
        if apply_exif:
            try:
                img = ImageOps.exif_transpose(img)
            except Exception:
                pass  # broken EXIF: keep pixels as stored (the header check agreed: orientation 1)
        return _pil_to_array(img)


def _pil_to_array(img: Image.Image) -> np.ndarray:
    """Gray modes as one channel, other 8-bit modes to RGB via Pillow; high-bit modes kept raw so they can be
    rescaled, not truncated."""
    if img.mode in _HIGH_BIT_MODES + ("1", "L"):
        return np.asarray(img)  # "1" gives bool: 0/255 in _to_rgb_uint8, as Pillow's RGB conversion would
    if img.mode == "LA":
        return np.asarray(img.convert("L"))
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")  # applies palette transparency without Pillow's warning
    if img.mode != "RGB":
        img = img.convert("RGB")  # L, 1, LA, RGBA (alpha dropped), CMYK, YCbCr, ...
    return np.asarray(img)


# ------------------------------------------------------------------------------------- to RGB uint8


def _percentile_range(arr: np.ndarray, percentiles=DEFAULT_PERCENTILES):
    """(low, high) values at ``percentiles`` of all of ``arr`` (jointly over channels), or None when constant.

    Estimated on a strided spatial subsample of about _SUBSAMPLE_TARGET pixels, which keeps big images fast;
    NaN/inf are ignored. When the percentiles coincide (a mostly constant image with a few outliers) the
    plain range is used.
    """
    step = max(1, math.ceil(math.sqrt(arr.shape[0] * arr.shape[1] / _SUBSAMPLE_TARGET)))
    sample = arr[::step, ::step].astype(np.float64).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return None
    lo, hi = np.percentile(sample, list(percentiles))
    if hi <= lo:
        lo, hi = sample.min(), sample.max()
    return None if hi <= lo else (float(lo), float(hi))


def _rescale_to_uint8(arr: np.ndarray, percentiles=DEFAULT_PERCENTILES, joint: bool = True) -> np.ndarray:
    """Percentile stretch to 0..255: microscopy 16-bit data uses a small part of its range, and a hot pixel
    must not decide the scale. ``joint``: one range for all channels (colours keep their balance); else one
    per channel (fluorescence channels differ in brightness). Constant (or all-NaN) channels become zeros."""
    if not joint and arr.ndim == 3:
        out = np.empty(arr.shape, np.uint8)
        for c in range(arr.shape[2]):
            out[:, :, c] = _rescale_to_uint8(arr[:, :, c], percentiles)
        return out
    limits = _percentile_range(arr, percentiles)
    if limits is None:
        return np.zeros(arr.shape, np.uint8)
    lo, hi = limits
    scaled = (arr.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.rint(np.nan_to_num(np.clip(scaled, 0, 255), nan=0.0)).astype(np.uint8)


def _to_rgb_uint8(arr: np.ndarray, path: Path, channels=None, percentiles=DEFAULT_PERCENTILES) -> np.ndarray:
    """(H, W[, C]) of any dtype to C-contiguous (H, W, 3) uint8.

    ``channels`` None: as stored (gray, RGB, RGBA without alpha); 8-bit data is never rescaled, other
    depths get one joint stretch. Otherwise the chosen channels, each stretched on its own, become grey
    (one), R and G (two, B = 0) or R, G, B (three).
    """
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 2:
        arr = arr[:, :, None]
    n = arr.shape[2]
    if channels is None:
        if n == 4:
            arr = arr[:, :, :3]  # drop alpha
        elif n not in (1, 3):
            raise _channel_error(path, n)
        if arr.dtype != np.uint8:
            arr = _rescale_to_uint8(arr, percentiles, joint=True)
    else:
        _check_request(path, ImageInfo(arr.shape[1], arr.shape[0], n, 1), channels, 0)
        arr = _rescale_to_uint8(arr[:, :, list(channels)], percentiles, joint=False)
        if arr.shape[2] == 2:
            arr = np.concatenate([arr, np.zeros_like(arr[:, :, :1])], axis=2)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr)


def contrast_limits(image: np.ndarray, percentiles=DEFAULT_PERCENTILES) -> tuple:
    """(low, high) display range of raw, non-RGB pixels for napari, from the same percentiles as
    :func:`load_image`. ``image``: (Y, X) or a stack (..., Y, X), of which at most 8 evenly spaced planes
    are sampled (strided, so it costs little on big images); a constant image gets (v, v + 1)."""
    percentiles = _check_percentiles(percentiles)
    image = np.asarray(image)
    if image.ndim > 2:
        flat = image.reshape((-1,) + image.shape[-2:])
        image = flat[::max(1, math.ceil(len(flat) / 8))].transpose(1, 2, 0)  # views: (Y, X, planes)
    limits = _percentile_range(image, percentiles)
    if limits is None:
        finite = image[np.isfinite(image)] if image.dtype.kind == "f" else image
        v = float(finite.min()) if finite.size else 0.0
        return v, v + 1.0
    return limits


# ---------------------------------------------------------------------------------------------- public


def _is_tiff(magic: bytes) -> bool:
    """Sniff content, not suffix: a .tif that is really a PNG still loads (and vice versa)."""
    return magic[:4] in _TIFF_MAGIC


def image_info(path) -> ImageInfo:
    """Size (as load_image returns it), channels and planes, from the header only; raises ImageError for a
    file that cannot be read at all (but not for a stack or an odd channel count: see read_header)."""
    path = Path(path)
    magic = _check_file(path)
    info = _tiff_info(path) if _is_tiff(magic) else None
    return info if info is not None else _pil_header(path, apply_exif=not _is_tiff(magic))


def stack_planes(path) -> int:
    """Number of planes of an image file from its header (1 for a 2-D image), without decoding pixels."""
    return image_info(path).planes


def read_header(path, channels=None, plane=None) -> tuple:
    """(width, height) as load_image(path, channels=, plane=) will return them, from the header only;
    raises ImageError, also for a stack without ``plane`` and for channels the file does not have."""
    path = Path(path)
    info = image_info(path)
    _check_request(path, info, _check_channels(channels), _check_plane(plane))
    return info.width, info.height


def _check_plane(plane):
    if plane is None:
        return None
    try:
        return operator.index(plane)
    except TypeError:
        raise ValueError(f"plane must be an integer index or None, got {plane!r}") from None


def _resolve(options, channels, percentiles) -> ImageOptions:
    """ImageOptions from ``options=`` or the loose keywords (not both)."""
    if options is None:
        return ImageOptions(channels, DEFAULT_PERCENTILES if percentiles is None else percentiles)
    if channels is not None or percentiles is not None:
        raise TypeError("pass either options= or channels= / percentiles=, not both")
    return options if isinstance(options, ImageOptions) else ImageOptions.from_dict(options)


def load_image(path, channels=None, percentiles=None, plane=None, *, options=None) -> np.ndarray:
    """Full decode to RGB uint8 (H, W, 3), C-contiguous; raises ImageError (absolute path) on any problem.

    ``channels`` (e.g. ``(0,)`` or ``(1, 0)``), ``percentiles`` (default (1, 99.8)) and ``plane`` of a stack
    are described in the module docstring; ``options`` (an :class:`ImageOptions` or its dict) replaces the
    first two. With the defaults an ordinary photo reads exactly as stored. Invalid option values raise
    ValueError (a caller's mistake, not the file's).
    """
    opts = _resolve(options, channels, percentiles)
    plane = _check_plane(plane)
    path = Path(path).absolute()
    try:
        magic = _check_file(path)
        arr = _load_tiff(path, plane, opts.channels) if _is_tiff(magic) else None
        if isinstance(arr, _TiffDecodeFailure):
            failure = arr
            try:
                arr = _load_pil(path, False, plane, opts.channels)
            except ImageError:
                raise ImageError(path, f"truncated or corrupt image data (tifffile: {failure.exc}). {_FIX}") from None
        elif arr is None:
            arr = _load_pil(path, not _is_tiff(magic), plane, opts.channels)
        rgb = _to_rgb_uint8(arr, path, opts.channels, opts.percentiles)
        return np.ascontiguousarray(rgb[:, ::-1]) if opts.mirrored else rgb
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(path, "not enough memory to decode this image. Downsample it.") from None
    except Exception as exc:  # a decoder bug or odd format must not abort the run
        raise ImageError(path, f"could not be read ({type(exc).__name__}: {exc}). {_FIX}") from None


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _is_candidate(name: str) -> bool:
    return not _is_hidden(name) and name.lower().endswith(SUPPORTED_SUFFIXES)


def _links_inside(path: Path, root: Path) -> bool:
    """A directory symlink whose target lies inside root (already walked via its real path)."""
    return path.is_symlink() and Path(os.path.realpath(path)).is_relative_to(root)


PROJECT_MARKERS = ("project.json", "images.json")  # a maskdistill project folder (engine.state.project)
LABEL_EXPORT_INDEX = "instances.json"  # beside the label images of `maskdistill export --labels`


def is_generated_folder(folder: Path) -> bool:
    """A maskdistill project folder or a label-image export: its images (overview.png, label maps) are the
    engine's outputs, and taking them for inputs would change the project on every run."""
    folder = Path(folder)
    if all((folder / name).is_file() for name in PROJECT_MARKERS):
        return True
    index = folder / LABEL_EXPORT_INDEX
    if not index.is_file():
        return False
    try:  # a COCO file of the same name lists its images; a label export maps label file -> image
        document = json.loads(index.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and isinstance(document.get("images"), dict) and "categories" in document


def _real(path) -> str:
    return os.path.realpath(path)


def _walk(root: Path, recursive: bool, skipped: list, exclude: frozenset = frozenset()):
    """Yield candidate file paths; unlistable subfolders go to ``skipped``.

    Directory symlinks that point inside ``root`` are not followed (their files are found under their
    real path, so relative paths and ids do not depend on walk order); those pointing outside are
    followed, but each real directory is visited once, so symlink loops terminate. Paths in ``exclude``
    (real paths of files and folders) and generated folders below ``root`` (:func:`is_generated_folder`)
    are never entered or listed."""
    if not recursive:
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            if _is_candidate(entry.name) and not entry.is_dir() and _real(entry.path) not in exclude:
                yield Path(entry.path)
        return

    def onerror(exc):
        rel = Path(exc.filename).relative_to(root).as_posix() if exc.filename else "?"
        skipped.append(SkippedFile(rel + "/", f"cannot list folder ({exc.strerror or exc}). Check its permissions."))

    def entered(folder: Path) -> bool:
        return not (_is_hidden(folder.name) or _links_inside(folder, root) or _real(folder) in exclude
                    or is_generated_folder(folder))

    seen = set()
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if entered(Path(dirpath) / d))
        for name in sorted(filenames):
            if _is_candidate(name) and _real(Path(dirpath) / name) not in exclude:
                yield Path(dirpath) / name


def _check_root(folder) -> Path:
    root = Path(folder).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"Image folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"Not a folder: {root} (choose the folder that contains the images)")
    return root.resolve()


def discover_images(folder, recursive: bool = False, planes: bool = False, channels=None, *,
                    options=None, exclude=()) -> Discovery:
    """List the supported images of ``folder`` (header checks only); bad files go to ``skipped``.

    ``planes``: a stack of Z planes gives Z records (same ``relative_path``, ``plane`` 0..Z-1, ids stable
    per file and plane) instead of a skip; a 2-D image gives one record with ``plane`` None either way.
    ``channels``: files without those channels are skipped with a reason (and files with 2 or 5+ channels
    are accepted). ``options`` (ImageOptions) replaces both. ``exclude``: files and folders never listed (a
    project's own outputs); with ``recursive``, maskdistill projects and label exports below ``folder`` are
    never entered either.
    """
    if options is not None:
        if planes or channels is not None:
            raise TypeError("pass either options= or planes= / channels=, not both")
        opts = options if isinstance(options, ImageOptions) else ImageOptions.from_dict(options)
        planes, channels = opts.planes, opts.channels
    channels = _check_channels(channels)
    root = _check_root(folder)
    images: list = []
    skipped: list = []
    for path in _walk(root, recursive, skipped, frozenset(_real(p) for p in exclude)):
        rel = path.relative_to(root).as_posix()
        try:
            info = image_info(path)
            stack = planes and info.planes > 1
            _check_request(path, info, channels, 0 if stack else None)
        except ImageError as exc:
            skipped.append(SkippedFile(rel, exc.reason))
            continue
        except Exception as exc:  # never let one file abort discovery
            skipped.append(SkippedFile(rel, f"could not be read ({type(exc).__name__}: {exc}). {_FIX}"))
            continue
        for plane in range(info.planes) if stack else [None]:
            images.append(ImageRecord(image_id_for(rel, plane), path, rel, int(info.width), int(info.height), plane))
    images.sort(key=lambda r: (r.relative_path, -1 if r.plane is None else r.plane))
    skipped.sort(key=lambda s: s.relative_path)
    return Discovery(root=root, images=images, skipped=skipped)


@dataclass(frozen=True)
class ImageSource:
    """Where a project's images are and how they are read: every step loads an image through this, so the
    channel choice, normalisation and plane of a stack are applied the same way everywhere."""

    root: Path
    options: ImageOptions = field(default_factory=ImageOptions)

    def load(self, entry: dict) -> np.ndarray:
        """The RGB uint8 image of an images.json entry (its plane, for a stack); inside :func:`decoding_once`,
        read-only and decoded once. ImageError when the file is no longer the size the entry says (replaced
        or resized since the run): its masks, features and corrections were made for the old pixels."""
        path = Path(self.root) / entry["relative_path"]
        image = load_image_once(path, entry.get("plane"), self.options)
        height, width = entry.get("height"), entry.get("width")
        if height is not None and width is not None and tuple(image.shape[:2]) != (int(height), int(width)):
            raise ImageError(path.absolute(), f"it is now {image.shape[1]} x {image.shape[0]} pixels but was "
                             f"{width} x {height} when the project was run (replaced or resized). Run "
                             "`maskdistill run` on the folder again to take it in: your corrections of it are "
                             "kept, or set aside in corrections/orphaned/ when they no longer fit.")
        return image

    @classmethod
    def of_project(cls, project_config: dict) -> ImageSource:
        """From project.json (``image_root`` and the run's ``image_options``)."""
        return cls(Path(project_config["image_root"]),
                   ImageOptions.from_dict(project_config.get("config", {}).get("image_options")))


class _LastDecode:
    """The last image decoded inside :func:`decoding_once`, with the key it was decoded for."""

    lock = threading.Lock()
    depth = 0  # open decoding_once blocks
    key: tuple | None = None
    image: np.ndarray | None = None


@contextlib.contextmanager
def decoding_once():
    """Within it, :func:`load_image_once` of the same file (same bytes on disk, plane and options) returns
    the previous decode instead of decoding again. A run's steps each read its images (proposals, filtering,
    self-training, prediction, overview): a 12,000 px image costs seconds and half a GB per decode. One image
    is kept, the last one (each step goes through the images in turn, so an image that is the whole project
    decodes once per run), and released when the block ends: never more than one extra image in memory."""
    with _LastDecode.lock:
        _LastDecode.depth += 1
    try:
        yield
    finally:
        with _LastDecode.lock:
            _LastDecode.depth -= 1
            if not _LastDecode.depth:
                _LastDecode.key = _LastDecode.image = None


def load_image_once(path, plane=None, options=None) -> np.ndarray:
    """:func:`load_image` (``options``: ImageOptions), read-only and reused inside :func:`decoding_once`."""
    options = _resolve(options, None, None)
    if not _LastDecode.depth:
        return load_image(path, plane=plane, options=options)
    path = Path(path).absolute()
    try:
        stat = path.stat()
    except OSError:
        return load_image(path, plane=plane, options=options)  # raises the ImageError that names the problem
    key = (str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino, plane, options)
    with _LastDecode.lock:
        if _LastDecode.key == key and _LastDecode.image is not None:
            return _LastDecode.image
        _LastDecode.key = _LastDecode.image = None  # the previous image is freed before this one is decoded
    image = load_image(path, plane=plane, options=options)
    image.flags.writeable = False  # shared by the steps: none may change it in place
    with _LastDecode.lock:
        if _LastDecode.depth:
            _LastDecode.key, _LastDecode.image = key, image
    return image


def display_name(entry: dict) -> str:
    """A short name of an images.json entry: the file stem, with the plane of a stack (``cells_z3``)."""
    stem = Path(entry["relative_path"]).stem
    return stem if entry.get("plane") is None else f"{stem}_z{entry['plane']}"


def message_name(entry: dict) -> str:
    """An images.json entry as messages name it: its file (relative to the image folder), with the plane of a
    stack (``stack.tif (plane 3)``)."""
    plane = entry.get("plane")
    return entry["relative_path"] if plane is None else f"{entry['relative_path']} (plane {plane})"
