"""Turn a user's own picture into a 28x28 image like MNIST's or Fashion-MNIST's.

MNIST digits are light ink on a dark background, cropped to the ink, scaled so
that the longer side is 20 pixels, and pasted into a 28x28 field so that the
centre of mass of the ink sits at the centre. A digit drawn in a paint program
or photographed is none of these; :func:`prepare_digit` makes it so.
Fashion-MNIST objects are light on black too, but trimmed to the object,
scaled so that the longer side fills all 28 pixels and centred by their
bounding box: :func:`prepare_image` with ``mode="object"`` does that.

Decoding is Pillow's, restricted to PNG, JPEG, BMP, GIF and WebP. The image
size declared in the header is checked before any pixel is decoded, so a file
declaring a huge canvas (a decompression bomb) is refused cheaply.

All pixel arithmetic is done in float64 after an exact conversion from the
stored integers, so nothing can wrap around as it would in uint8.
"""

import io
import os
import re
import warnings

import numpy as np

from softmaxreg.errors import ImageError

#: Side, in pixels, of the MNIST field and of the box the digit is scaled into.
FIELD_SIZE = 28
DIGIT_SIZE = 20

#: Largest image accepted, in pixels (width * height), checked before decoding.
MAX_PIXELS = 64 * 1024 * 1024

#: What :func:`prepare_image` can imitate: MNIST digits, Fashion-MNIST objects.
IMAGE_MODES = ("digit", "object")

#: Larger images are reduced to this longer side before any float arithmetic;
#: a 20-pixel digit needs no more detail than this.
WORKING_SIDE = 1024

#: Image formats Pillow may use to decode; other formats are never tried.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")

# After background removal, ink below this level is treated as noise (JPEG
# ringing, paper texture) and the bounding box is taken over what remains.
_NOISE_FLOOR = 0.1

# An image whose ink stands less than this far above its background is blank.
_MIN_CONTRAST = 0.1

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as Pillow's "L"


def prepare_image(source, *, mode="digit", invert="auto", return_info=False):
    """Make one picture look like an image of an MNIST-style dataset.

    Parameters
    ----------
    source : str, os.PathLike, bytes, PIL.Image.Image or numpy.ndarray
        A path to an image file, the bytes of one, an opened Pillow image, or
        an array of shape (height, width) or (height, width, n_channels) with
        1 (gray), 2 (gray, alpha), 3 (RGB) or 4 (RGBA) channels. Integer arrays
        are read as 0..255 (or 0..65535 when larger values occur); float arrays
        as 0..1 (or 0..255 when larger values occur).
    mode : {"digit", "object"}, default "digit"
        ``"digit"`` does what MNIST did: the ink is scaled so that its longer
        side is 20 pixels and pasted so that its centre of mass is at the
        centre. ``"object"`` does what Fashion-MNIST did: the object is
        scaled so that its longer side is 28 pixels and centred by its
        bounding box. A dataset's mode is
        ``softmaxreg.datasets.get_spec(name).image_mode``.
    invert : {"auto", True, False}, default "auto"
        Whether to turn a dark subject on a light background into light on
        dark, as both datasets store it. "auto" inverts when the border of
        the image is mostly light.
    return_info : bool, default False
        Also return a dict describing what was done.

    Returns
    -------
    image : numpy.ndarray of shape (28, 28), float32, values in [0, 1]
        The subject light on a black background.
    info : dict, only when ``return_info`` is true
        ``image_mode``, ``inverted`` (bool), ``original_size``
        ((width, height)), ``mode`` (Pillow mode or array dtype), ``format``
        (file format or None), ``has_alpha``, ``background`` (background
        level in [0, 1] before inversion), ``bbox`` ((left, top, right,
        bottom) of the subject in the original's pixels), ``scaled_size``
        ((width, height) of the subject before pasting) and ``offset``
        ((left, top) of the paste).

    Raises
    ------
    ImageError
        The source cannot be read or decoded, is too large, is not an image
        format listed in :data:`FORMATS`, or holds no subject (blank or
        uniform). When the source is a path, the message names the file.

    Notes
    -----
    The background is the median of the border pixels, and every pixel
    standing clearly above it is the subject. This suits scans, drawings and
    evenly lit photographs of one thing. NOTE: a shadow, a ruled line or a
    second mark is taken as part of the subject too and widens the bounding
    box, making the subject smaller; crop such photographs first. NOTE: in
    "object" mode, parts of an object as dark as the background (a black
    sole on a black field) cannot be told from it, as in Fashion-MNIST.
    """
    _check_options(mode, invert)
    try:
        image, info = _prepare(source, mode, invert)
    except ImageError as exc:
        if isinstance(source, (str, os.PathLike)) and repr(os.fspath(source)) \
                not in str(exc):
            raise ImageError(f"{os.fspath(source)!r}: {exc}") from exc
        raise
    return (image, info) if return_info else image


def prepare_digit(source, *, invert="auto", return_info=False):
    """Make one digit image look like an MNIST digit.

    The same as ``prepare_image(source, mode="digit", ...)``; see
    :func:`prepare_image` for the parameters, the result and the errors.
    """
    return prepare_image(source, mode="digit", invert=invert,
                         return_info=return_info)


def _check_options(mode, invert):
    if not (isinstance(mode, str) and mode in IMAGE_MODES):
        raise ValueError(
            f"mode must be one of {', '.join(map(repr, IMAGE_MODES))}; got "
            f"{mode!r}. Use 'digit' for MNIST, 'object' for Fashion-MNIST."
        )
    if not (invert == "auto" if isinstance(invert, str)
            else isinstance(invert, (bool, np.bool_))):
        raise ValueError(
            f"invert must be 'auto', True or False; got {invert!r}. Use 'auto' to "
            "detect dark ink on a light background."
        )


def _prepare(source, mode, invert):
    """The steps of :func:`prepare_image`; returns the image and its info."""
    gray, alpha, info = _read_gray(source)
    gray, info["has_alpha"] = _flatten_alpha(gray, alpha), alpha is not None

    background = float(np.median(_border(gray)))
    inverted = background > 0.5 if invert == "auto" else bool(invert)
    if inverted:
        gray = 1.0 - gray
        background = 1.0 - background
    hint = not inverted and not isinstance(invert, str)
    ink = _remove_background(gray, background, hint=hint)
    info.update(image_mode=mode, inverted=inverted, background=round(
        1.0 - background if inverted else background, 4))

    bbox = _ink_bbox(ink)
    box = DIGIT_SIZE if mode == "digit" else FIELD_SIZE
    subject = _scale_to_box(ink[bbox[1]:bbox[3], bbox[0]:bbox[2]], box)
    if mode == "digit":
        image, offset = _paste_centred(subject)
    else:
        image, offset = _paste_box_centred(subject)

    factor = info.pop("_reduction")
    info.update(
        bbox=tuple(int(round(v * factor)) for v in bbox),
        scaled_size=(subject.shape[1], subject.shape[0]),
        offset=offset,
    )
    return image.astype(np.float32), info


def prepare_digits(sources, *, invert="auto"):
    """Prepare several digits; returns an array of shape (n_samples, 28, 28)."""
    return prepare_images(sources, mode="digit", invert=invert)


def prepare_images(sources, *, mode="digit", invert="auto"):
    """Prepare several pictures; returns an array of shape (n_samples, 28, 28)."""
    images = [prepare_image(source, mode=mode, invert=invert) for source in sources]
    if not images:
        return np.zeros((0, FIELD_SIZE, FIELD_SIZE), dtype=np.float32)
    return np.stack(images)


# ---------------------------------------------------------------- reading


def _read_gray(source):
    """Gray levels in [0, 1] of shape (height, width), alpha or None, info."""
    if isinstance(source, np.ndarray):
        return _array_gray(source)

    from PIL import Image

    if isinstance(source, Image.Image):
        return _pil_gray(source, getattr(source, "format", None), "the image")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode(io.BytesIO(bytes(source)), "the given data")
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as stream:
                data = stream.read(_max_file_bytes())
        except OSError as exc:
            raise ImageError(
                f"cannot read image file {os.fspath(source)!r}: {exc.strerror or exc}"
            ) from exc
        return _decode(io.BytesIO(data), repr(os.fspath(source)))
    raise TypeError(
        "source must be a path, bytes, a PIL image or a numpy array; got "
        f"{type(source).__name__}"
    )


def _max_file_bytes():
    # An uncompressed RGBA image at the size limit, plus headers: nothing real
    # is larger, and reading is bounded even for a device file or a huge file.
    return MAX_PIXELS * 4 + (1 << 20)


def _decode(stream, where):
    """Open with Pillow, check the declared size, then decode."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # The size is checked just below against a lower limit than
            # Pillow's, so its own warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream, formats=FORMATS)
    except Image.DecompressionBombError as exc:
        # Pillow's own, higher limit: its message holds the pixel count.
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_large(where, f"{declared[1]} pixels" if declared else "too many "
                         "pixels") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"cannot decode {where} as an image: it is none of "
            f"{', '.join(FORMATS)}"
        ) from exc
    except Exception as exc:  # Pillow raises many kinds on malformed input
        raise ImageError(
            f"cannot decode {where} as an image ({', '.join(FORMATS)}): {exc}"
        ) from exc
    return _pil_gray(image, image.format, where)


def _too_large(where, declared):
    return ImageError(
        f"{where} declares an image of {declared}, more than the {MAX_PIXELS} "
        "accepted (a decompression bomb, or a huge scan). Crop or shrink it first."
    )


def _check_size(width, height, where):
    if width < 1 or height < 1:
        raise ImageError(f"{where} is empty: {width}x{height} pixels")
    if width * height > MAX_PIXELS:
        raise _too_large(where, f"{width}x{height} pixels")


def _pil_gray(image, file_format, where):
    """Decode a Pillow image (first frame) into gray and alpha levels."""
    width, height = image.size
    _check_size(width, height, where)
    info = {"original_size": (width, height), "mode": image.mode,
            "format": file_format}
    try:
        if file_format == "JPEG":
            # Lets libjpeg decode a big photograph at 1/2, 1/4 or 1/8 scale.
            image.draft(image.mode, (WORKING_SIDE, WORKING_SIDE))
        image.load()
        levels, alpha = _pil_levels(image)
    except Exception as exc:  # truncated or corrupt data shows up on load
        raise ImageError(f"cannot decode the image data: {exc}") from exc
    info["_reduction"] = width / levels.shape[1]
    return levels, alpha, info


def _pil_levels(image):
    """Gray and alpha as float64 in [0, 1], reduced to WORKING_SIDE."""
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "I":
        gray = np.asarray(image, dtype=np.float64)
        return _reduce(np.clip(gray, 0, 65535) / 65535.0), None
    if image.mode == "F":
        return _array_gray(np.asarray(image))[:2]

    has_alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
    if has_alpha:
        # Through RGBA so that palette or single-colour transparency is kept.
        image = image.convert("RGBA").convert("LA")
    else:
        image = image.convert("L")
    image = _reduce_image(image)
    pixels = np.asarray(image, dtype=np.float64) / 255.0
    if has_alpha:
        return pixels[..., 0], pixels[..., 1]
    return pixels, None


def _reduce_image(image):
    longer = max(image.size)
    if longer <= WORKING_SIDE:
        return image
    from PIL import Image

    scale = WORKING_SIDE / longer
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BOX)


def _reduce(levels):
    """Shrink a float (height, width) array so its longer side <= WORKING_SIDE."""
    if max(levels.shape) <= WORKING_SIDE:
        return levels
    from PIL import Image

    image = _reduce_image(Image.fromarray(levels.astype(np.float32)))
    return np.asarray(image, dtype=np.float64)


def _array_gray(array):
    """Gray and alpha levels from a (height, width[, n_channels]) array."""
    n_channels = array.shape[2] if array.ndim == 3 else 1
    if array.ndim not in (2, 3) or n_channels not in (1, 2, 3, 4):
        raise ImageError(
            "an image array must have shape (height, width) or (height, width, "
            f"n_channels) with 1 to 4 channels; got shape {array.shape}. For a "
            "flat MNIST row use array.reshape(28, 28)."
        )
    _check_size(array.shape[1], array.shape[0], f"the array of shape {array.shape}")
    info = {"original_size": (array.shape[1], array.shape[0]),
            "mode": str(array.dtype), "format": None}
    levels = _unit_levels(array)
    if levels.ndim == 2:
        channels = levels[..., None]
    else:
        channels = levels
    n_channels = channels.shape[2]
    alpha = channels[..., -1] if n_channels in (2, 4) else None
    color = channels[..., :3] if n_channels >= 3 else channels[..., :1]
    gray = color @ _LUMA if color.shape[2] == 3 else color[..., 0]  # (height, width)
    gray = _reduce(gray)
    if alpha is not None:
        alpha = _reduce(alpha)
    info["_reduction"] = array.shape[1] / gray.shape[1]
    return gray, alpha, info


def _unit_levels(array):
    """Array values as float64 in [0, 1], judging the range from the dtype."""
    if array.dtype == bool:
        return array.astype(np.float64)
    if not (np.issubdtype(array.dtype, np.integer)
            or np.issubdtype(array.dtype, np.floating)):
        raise ImageError(
            f"an image array must hold numbers; got dtype {array.dtype}"
        )
    levels = array.astype(np.float64)
    if not np.isfinite(levels).all():
        raise ImageError("an image array holds NaN or infinite values")
    low, high = levels.min(), levels.max()
    if low < 0:
        raise ImageError(
            f"an image array must not hold negative values; its minimum is {low:g}"
        )
    if np.issubdtype(array.dtype, np.floating) and high <= 1.0:
        return levels
    if high <= 255:
        return levels / 255.0
    if high <= 65535 and not np.issubdtype(array.dtype, np.floating):
        return levels / 65535.0
    raise ImageError(
        f"an image array's values must lie in 0..1, 0..255 or 0..65535; its "
        f"maximum is {high:g}. Rescale it to 0..1 first."
    )


# ---------------------------------------------------------------- shaping


def _flatten_alpha(gray, alpha):
    """Composite onto the background that contrasts with the opaque ink.

    A transparent pixel has no colour of its own (it is often stored black),
    so the background is chosen: white under dark ink, black under light ink.
    """
    if alpha is None:
        return gray
    coverage = alpha.sum()
    if coverage == 0:
        raise ImageError("the image is fully transparent: there is no digit in it")
    ink_level = float((gray * alpha).sum() / coverage)  # alpha-weighted mean
    backdrop = 1.0 if ink_level < 0.5 else 0.0
    return gray * alpha + backdrop * (1.0 - alpha)  # (height, width)


def _border(levels):
    """The pixels of the outermost rows and columns."""
    return np.concatenate(
        [levels[0], levels[-1], levels[1:-1, 0], levels[1:-1, -1]]
    )


def _remove_background(gray, background, hint):
    """Ink in [0, 1]: 0 at the background level, 1 at the brightest ink."""
    contrast = float(gray.max()) - background
    if contrast < _MIN_CONTRAST:
        fix = (" If the digit is dark on a light background, pass invert=True or "
               "'auto'." if hint else "")
        raise ImageError(
            "the image is blank or uniform: its brightest ink stands only "
            f"{max(contrast, 0.0):.3f} above the background (at least "
            f"{_MIN_CONTRAST} is needed).{fix}"
        )
    ink = np.clip((gray - background) / contrast, 0.0, 1.0)
    ink[ink < _NOISE_FLOOR] = 0.0
    return ink


def _ink_bbox(ink):
    """(left, top, right, bottom) of the nonzero ink, right/bottom exclusive."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _scale_to_box(ink, box):
    """Scale so the longer side is ``box`` pixels, keeping the aspect ratio."""
    from PIL import Image

    height, width = ink.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Pillow's bilinear filter widens its support when shrinking, so it
    # averages over the covered area (anti-aliasing) and never overshoots.
    image = Image.fromarray(ink.astype(np.float32)).resize(
        size, Image.Resampling.BILINEAR
    )
    return np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)


def _paste_centred(digit):
    """Paste into the 28x28 field with the centre of mass at its centre.

    The shift is whole pixels, as MNIST's, and limited so the digit stays
    inside the field. Returns the field and the (left, top) offset.
    """
    height, width = digit.shape
    mass = digit.sum()
    rows = np.arange(height) @ digit.sum(axis=1) / mass  # centre row of the ink
    cols = np.arange(width) @ digit.sum(axis=0) / mass
    # MNIST's ink centre of mass averages 14.0 in zero-based pixel indices
    # (measured on its test set), not the geometric centre 13.5.
    centre = FIELD_SIZE / 2.0
    top = int(np.clip(round(centre - rows), 0, FIELD_SIZE - height))
    left = int(np.clip(round(centre - cols), 0, FIELD_SIZE - width))
    field = np.zeros((FIELD_SIZE, FIELD_SIZE))
    field[top:top + height, left:left + width] = digit
    return field, (left, top)


def _paste_box_centred(subject):
    """Paste into the 28x28 field with the bounding box at its centre.

    An odd margin puts the extra pixel above or to the left, as measured on
    Fashion-MNIST. Returns the field and the (left, top) offset.
    """
    height, width = subject.shape
    top, left = (FIELD_SIZE - height + 1) // 2, (FIELD_SIZE - width + 1) // 2
    field = np.zeros((FIELD_SIZE, FIELD_SIZE))
    field[top:top + height, left:left + width] = subject
    return field, (left, top)
