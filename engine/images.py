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

import hashlib
import math
import os
import unicodedata
import warnings
from dataclasses import dataclass
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
_FIX = "Re-export or remove the file."


class ImageError(ValueError):
    """An image that cannot be used; str() names the file and the problem and what to do."""

    def __init__(self, path, reason):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class ImageRecord:
    image_id: str  # "img_" + 12 hex of sha1(relative_path): stable across runs and machines
    path: Path  # absolute path
    relative_path: str  # posix path relative to the folder root
    width: int  # after EXIF orientation
    height: int


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


def image_id_for(relative_path: str) -> str:
    """Id from the relative path; NFC-normalised so a folder copied from macOS (NFD names) keeps its ids."""
    key = unicodedata.normalize("NFC", relative_path).encode("utf-8")
    return "img_" + hashlib.sha1(key).hexdigest()[:12]


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
    return ImageError(path, f"2-D images only: {path.name} has {planes} pages/planes. Split the stack into "
                            "single images (Fiji: Image > Stacks > Stack to Images) or save a projection.")


def _channel_error(path: Path, channels: int) -> ImageError:
    return ImageError(path, f"unsupported channel count: {channels} channels; only 1 (gray), 3 (RGB) or 4 "
                            "(RGBA) are supported. Save a single channel or an RGB composite.")


# ------------------------------------------------------------------------------------------------ TIFF


def _tiff_layout(tif: tifffile.TiffFile, path: Path):
    """(kept (size, axis) pairs, height, width, channels) of series 0; rejects stacks and odd channels.

    Singleton axes are dropped (but never Y or X, so 1x1 images work); S/C is the channel axis; any
    other axis longer than 1, or further full-resolution series (e.g. appended pages), counts as planes.
    """
    series = tif.series[0]
    keep = [(n, a) for n, a in zip(series.shape, series.axes) if n > 1 or a in "YX"]
    chans = [n for n, a in keep if a in "SC"]
    planes = math.prod(n for n, a in keep if a not in "YXSC")
    planes += sum(len(s.pages) for s in tif.series[1:] if not s.keyframe.is_reduced)
    if planes > 1:
        raise _stack_error(path, planes)
    if len(chans) > 1 or [a for _, a in keep if a in "YX"] != ["Y", "X"]:
        raise ImageError(path, f"unsupported TIFF layout {series.axes} {series.shape}. Save it as a 2-D "
                               "gray or RGB image.")
    channels = chans[0] if chans else 1
    if channels not in (1, 3, 4):
        raise _channel_error(path, channels)
    height, width = (n for n, a in keep if a in "YX")
    _check_pixels(path, width, height)
    return keep, height, width, channels


def _tiff_size(path: Path):
    """(width, height) from the TIFF header via tifffile, or None if tifffile cannot parse it."""
    try:
        with tifffile.TiffFile(path) as tif:
            _, height, width, _ = _tiff_layout(tif, path)
            return width, height
    except ImageError:
        raise
    except Exception:
        return None


def _load_tiff(path: Path):
    """Pixel array (Y, X[, C]) via tifffile, or None when Pillow should decode it (palette, CMYK, ...)."""
    try:
        tif = tifffile.TiffFile(path)
    except Exception:
        return None
    with tif:
        keep, *_ = _tiff_layout(tif, path)
        photometric = tif.series[0].keyframe.photometric
        if photometric not in _TIFF_DATA_PHOTOMETRIC:
            return None
        try:
            arr = tif.series[0].asarray()
        except Exception as exc:
            return _TiffDecodeFailure(exc)
    axes = [a for _, a in keep]
    arr = arr.reshape([n for n, _ in keep]).transpose([axes.index(a) for a in axes if a not in "SC"]
                                                      + [i for i, a in enumerate(axes) if a in "SC"])
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


def _pil_oriented_size(img: Image.Image, apply_exif: bool):
    """(width, height) as load_image will return it: EXIF orientations 5-8 swap the sides."""
    width, height = img.size
    try:
        orientation = img.getexif().get(0x0112, 1) if apply_exif else 1
    except Exception:
        orientation = 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _pil_header(path: Path, apply_exif: bool):
    """(width, height) after orientation; rejects animations/stacks and oversized images."""
    with _open_pil(path) as img:
        frames = _pil_frames(img)
        if frames > 1:
            raise _stack_error(path, frames)
        _check_pixels(path, *img.size)
        return _pil_oriented_size(img, apply_exif)


def _load_pil(path: Path, apply_exif: bool) -> np.ndarray:
    """Decode with Pillow (truncated data raises: LOAD_TRUNCATED_IMAGES stays off) to an array."""
    _pil_header(path, apply_exif)
    with _open_pil(path) as img:
        try:
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
    """8-bit modes to RGB via Pillow; high-bit modes kept raw so they can be rescaled, not truncated."""
    if img.mode in _HIGH_BIT_MODES:
        return np.asarray(img)
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")  # applies palette transparency without Pillow's warning
    if img.mode != "RGB":
        img = img.convert("RGB")  # L, 1, LA, RGBA (alpha dropped), CMYK, YCbCr, ...
    return np.asarray(img)


# ------------------------------------------------------------------------------------- to RGB uint8


def _rescale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Robust min/max (0.5/99.5 percentiles) to 0..255: microscopy 16-bit data uses a small part of its range.

    Percentiles come from a strided spatial subsample (all channels, joint so colours keep their balance),
    which keeps big images fast. Constant images (or all-NaN) become zeros.
    """
    step = max(1, math.ceil(math.sqrt(arr.shape[0] * arr.shape[1] / _SUBSAMPLE_TARGET)))
    sample = arr[::step, ::step].astype(np.float64).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return np.zeros(arr.shape, np.uint8)
    lo, hi = np.percentile(sample, [0.5, 99.5])
    if hi <= lo:  # mostly-constant image with a few outliers: fall back to the plain range
        lo, hi = sample.min(), sample.max()
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    out = (arr.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.rint(np.nan_to_num(np.clip(out, 0, 255), nan=0.0)).astype(np.uint8)


def _to_rgb_uint8(arr: np.ndarray, path: Path) -> np.ndarray:
    """(H, W[, C]) of any dtype to C-contiguous (H, W, 3) uint8; 8-bit data is never rescaled."""
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        arr = _rescale_to_uint8(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    channels = arr.shape[2]
    if channels == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif channels == 4:
        arr = arr[:, :, :3]  # drop alpha
    elif channels != 3:
        raise _channel_error(path, channels)
    return np.ascontiguousarray(arr)


# ---------------------------------------------------------------------------------------------- public


def _is_tiff(magic: bytes) -> bool:
    """Sniff content, not suffix: a .tif that is really a PNG still loads (and vice versa)."""
    return magic[:4] in _TIFF_MAGIC


def read_header(path) -> tuple:
    """(width, height) as load_image will return them, from the header only; raises ImageError."""
    path = Path(path)
    magic = _check_file(path)
    size = _tiff_size(path) if _is_tiff(magic) else None
    return size if size is not None else _pil_header(path, apply_exif=not _is_tiff(magic))


def load_image(path) -> np.ndarray:
    """Full decode to RGB uint8 (H, W, 3), C-contiguous; raises ImageError (absolute path) on any problem."""
    path = Path(path).absolute()
    try:
        magic = _check_file(path)
        arr = _load_tiff(path) if _is_tiff(magic) else None
        if isinstance(arr, _TiffDecodeFailure):
            try:
                arr = _load_pil(path, apply_exif=False)
            except ImageError:
                raise ImageError(path, f"truncated or corrupt image data (tifffile: {arr.exc}). {_FIX}") from None
        elif arr is None:
            arr = _load_pil(path, apply_exif=not _is_tiff(magic))
        return _to_rgb_uint8(arr, path)
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


def _walk(root: Path, recursive: bool, skipped: list):
    """Yield candidate file paths; unlistable subfolders go to ``skipped``.

    Directory symlinks that point inside ``root`` are not followed (their files are found under their
    real path, so relative paths and ids do not depend on walk order); those pointing outside are
    followed, but each real directory is visited once, so symlink loops terminate."""
    if not recursive:
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            if _is_candidate(entry.name) and not entry.is_dir():
                yield Path(entry.path)
        return

    def onerror(exc):
        rel = Path(exc.filename).relative_to(root).as_posix() if exc.filename else "?"
        skipped.append(SkippedFile(rel + "/", f"cannot list folder ({exc.strerror or exc}). Check its permissions."))

    seen = set()
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d) and not _links_inside(Path(dirpath) / d, root))
        for name in sorted(filenames):
            if _is_candidate(name):
                yield Path(dirpath) / name


def _check_root(folder) -> Path:
    root = Path(folder).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"Image folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"Not a folder: {root} (choose the folder that contains the images)")
    return root.resolve()


def discover_images(folder, recursive: bool = False) -> Discovery:
    """List the supported images of ``folder`` (header checks only); bad files go to ``skipped``."""
    root = _check_root(folder)
    images, skipped = [], []
    for path in _walk(root, recursive, skipped):
        rel = path.relative_to(root).as_posix()
        try:
            width, height = read_header(path)
        except ImageError as exc:
            skipped.append(SkippedFile(rel, exc.reason))
            continue
        except Exception as exc:  # never let one file abort discovery
            skipped.append(SkippedFile(rel, f"could not be read ({type(exc).__name__}: {exc}). {_FIX}"))
            continue
        images.append(ImageRecord(image_id_for(rel), path, rel, int(width), int(height)))
    images.sort(key=lambda r: r.relative_path)
    skipped.sort(key=lambda s: s.relative_path)
    return Discovery(root=root, images=images, skipped=skipped)
