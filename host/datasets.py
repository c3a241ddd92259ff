"""Data sets as numpy arrays: scikit-learn's digits (embedded), CIFAR-10 from a local archive, and a
folder of images with one sub-folder per class.

Every source gives a :class:`Dataset` in one representation:

* ``images``: ``(N, H, W)`` ``uint8``, integer grey levels ``0 .. max_value`` (0 = black);
* ``labels``: ``(N,)`` ``int64``, indices into ``classes``;
* ``classes``: the class names, in label order;
* ``max_value``: the largest value a pixel can take (16 for digits, ``levels - 1`` otherwise), so
  ``images / max_value`` is the image in ``[0, 1]``;
* ``held_out``: which images the source itself holds out for testing (CIFAR-10's ``test_batch``), or
  ``None`` when the project's stratified split applies.

The arrays are read-only, so nothing downstream can change a loaded data set by accident.

:func:`split` gives the one train/test split every part of the project uses, as indices into the
data set's own order (for digits: the order of :func:`sklearn.datasets.load_digits`).

Colour images become grey with the ITU-R BT.601 luma, computed exactly in integers and rounded half
up (:func:`luma`); they can then be block-averaged to a smaller size (:func:`downsample`) and
quantised to fewer grey levels (:func:`quantise`). Nothing is resized to fit, clipped or dropped:
an input that does not fit is refused with a :class:`~spinemu.host.errors.InputError` naming the file
and the problem. ``docs/datasets.md`` describes the sources and what each mapping costs.
"""

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = ["Dataset", "DATASETS", "load_dataset", "load_digits", "load_cifar10", "load_folder",
           "split", "luma", "downsample", "quantise", "TEST_SIZE", "SPLIT_SEED", "IMAGE_SUFFIXES"]

#: The names :func:`load_dataset` accepts.
DATASETS = ("digits", "cifar10", "folder")

#: The stratified split: this fraction of each class is held out, drawn with this ``random_state``.
TEST_SIZE = 0.3
SPLIT_SEED = 0

#: File name endings (case-insensitive) that :func:`load_folder` reads as images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"
CIFAR_META_FILE = "batches.meta"
CIFAR_SIDE = 32


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images with labels, in the representation described in the module docstring.

    ``source`` says where the images came from (a path, or the embedded data set), for reports.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple
    max_value: int
    source: str
    held_out: np.ndarray | None = None

    def __post_init__(self):
        images, labels = self.images, self.labels
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be (N, H, W) uint8, not {images.shape} {images.dtype}")
        if labels.shape != (len(images),) or labels.dtype != np.int64:
            raise ValueError(f"labels must be ({len(images)},) int64, "
                             f"not {labels.shape} {labels.dtype}")
        if not 1 <= self.max_value <= 255:
            raise ValueError(f"max_value must be 1..255, not {self.max_value}")
        if images.size and int(images.max()) > self.max_value:
            raise ValueError(f"a pixel is {int(images.max())}, above max_value {self.max_value}")
        if labels.size and not (0 <= labels.min() and labels.max() < len(self.classes)):
            raise ValueError(f"labels must lie in 0..{len(self.classes) - 1}")
        if self.held_out is not None and (self.held_out.shape != labels.shape
                                          or self.held_out.dtype != np.bool_):
            raise ValueError(f"held_out must be ({len(images)},) bool")
        for array in (images, labels, self.held_out):
            if array is not None:
                array.flags.writeable = False

    def __len__(self):
        return len(self.images)

    @property
    def shape(self):
        """``(H, W)`` of every image."""
        return self.images.shape[1:]


def split(dataset):
    """The project's train/test split of ``dataset``: ``(train_indices, test_indices)``.

    Indices are into the data set's own order. When the source holds out its own test images
    (``dataset.held_out``, CIFAR-10's ``test_batch``) those are the test set and everything else is
    the training set, both in ascending order. Otherwise the split is exactly::

        sklearn.model_selection.train_test_split(np.arange(N), test_size=0.3, random_state=0,
                                                 stratify=dataset.labels)

    in the order it returns (for digits: 1257 training and 540 test images).
    """
    if dataset.held_out is not None:
        return np.flatnonzero(~dataset.held_out), np.flatnonzero(dataset.held_out)
    from sklearn.model_selection import train_test_split
    try:
        train, test = train_test_split(np.arange(len(dataset)), test_size=TEST_SIZE,
                                       random_state=SPLIT_SEED, stratify=dataset.labels)
    except ValueError as error:
        # e.g. a class with a single image cannot be stratified
        raise InputError(f"{dataset.source}: cannot split {dataset.name} into training and test "
                         f"images stratified by class: {error}") from None
    return train, test


def load_dataset(name, data_dir=None, *, size=None, levels=None):
    """Load the data set called ``name`` (one of :data:`DATASETS`).

    ``digits`` is embedded and takes no other argument. ``cifar10`` needs ``data_dir``, the
    ``cifar-10-batches-py`` directory; ``folder`` needs ``data_dir``, a folder with one sub-folder
    of images per class. Both take ``size`` (an int for a square ``size x size`` image, or
    ``(H, W)``; default: the images' own size) and ``levels`` (number of grey levels 2..256;
    default 256), see :func:`load_cifar10`. ``None`` means "not given", as from a command line
    without the option.
    """
    if name == "digits":
        given = [option for option, value in (("data_dir", data_dir), ("size", size),
                                              ("levels", levels)) if value is not None]
        if given:
            raise InputError(f"the digits data set is embedded and fixed (8x8, 0-16); "
                             f"it takes no {', '.join(given)}")
        return load_digits()
    if name == "cifar10":
        return load_cifar10(data_dir, size=size, levels=levels)
    if name == "folder":
        return load_folder(data_dir, size=size, levels=levels)
    raise InputError(f"unknown data set {name!r}; the data sets are {', '.join(DATASETS)}")


def load_digits():
    """scikit-learn's digits: 1797 images of 8x8 pixels, values 0..16, classes ``"0"`` .. ``"9"``,
    in the order of :func:`sklearn.datasets.load_digits`."""
    import sklearn.datasets
    bunch = sklearn.datasets.load_digits()
    images = bunch.images
    # the values are integer counts 0..16 stored as float; check before narrowing to uint8
    assert np.array_equal(images, np.round(images)) and images.min() >= 0 and images.max() <= 16
    return Dataset(name="digits", images=images.astype(np.uint8),
                   labels=bunch.target.astype(np.int64),
                   classes=tuple(str(name) for name in bunch.target_names), max_value=16,
                   source="scikit-learn load_digits (embedded)")


def luma(red, green, blue):
    """ITU-R BT.601 luma of 8-bit colour planes, as ``uint8``:
    ``floor((299 R + 587 G + 114 B + 500) / 1000)``, i.e. ``0.299 R + 0.587 G + 0.114 B`` rounded
    half up, exactly."""
    weighted = (299 * red.astype(np.uint32) + 587 * green.astype(np.uint32)
                + 114 * blue.astype(np.uint32) + 500)
    return (weighted // 1000).astype(np.uint8)


def downsample(images, size):
    """Block-average ``(N, H, W)`` 8-bit images to ``size = (h, w)``, which must divide ``(H, W)``:
    each output pixel is the mean of its ``H/h x W/w`` block, rounded half up, as ``uint8``."""
    n, height, width = images.shape
    h, w = size
    if height % h or width % w:
        raise ValueError(f"{h}x{w} does not divide {height}x{width}")
    bh, bw = height // h, width // w
    block = bh * bw
    sums = images.reshape(n, h, bh, w, bw).sum(axis=(2, 4), dtype=np.uint32)
    return ((sums + block // 2) // block).astype(np.uint8)


def quantise(images, levels):
    """Quantise 8-bit images to ``levels`` grey levels ``0 .. levels-1``:
    ``floor(v * levels / 256)``, equal bins of ``256 / levels`` values (16 levels: the top 4
    bits)."""
    return ((images.astype(np.uint32) * levels) >> 8).astype(np.uint8)


def _output_size(size, native, where):
    """Check a ``size`` option against the images' own ``(H, W)``; return the output ``(h, w)``."""
    if size is None:
        return native
    pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in pair):
        raise InputError(f"size must be a positive int or (H, W), not {size!r}")
    h, w = pair
    if native[0] % h or native[1] % w:
        raise InputError(f"{where}: cannot block-average {native[0]}x{native[1]} images to {h}x{w} "
                         f"(height x width); the size must divide the images' size")
    return (int(h), int(w))


def _check_levels(levels):
    if levels is None:
        return 256
    if not isinstance(levels, (int, np.integer)) or not 2 <= levels <= 256:
        raise InputError(f"levels must be an integer 2..256, not {levels!r}")
    return int(levels)


def _reduce(gray, size, levels):
    """Downsample then quantise 8-bit grey images; each step is skipped when it changes nothing."""
    if gray.shape[1:] != size:
        gray = downsample(gray, size)
    return gray if levels == 256 else quantise(gray, levels)


# What a CIFAR-10 python pickle may construct: numpy arrays and bytes (written by numpy 1 or 2, by
# Python 2 or 3). Anything else is refused, because unpickling can run arbitrary code.
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR-10 file "
                                         f"never holds; refusing to unpickle it")
        return super().find_class(module, name)


def _unpickle(path):
    if not path.is_file():
        raise InputError(f"{path}: missing CIFAR-10 file (expected {CIFAR_META_FILE}, "
                         f"{', '.join(CIFAR_TRAIN_FILES)} and {CIFAR_TEST_FILE})")
    try:
        with open(path, "rb") as file:
            # the archive was pickled by Python 2: keep its byte-string keys as bytes
            content = _ArrayUnpickler(file, encoding="bytes").load()
    except Exception as error:  # a damaged pickle can raise almost anything
        raise InputError(f"{path}: not a readable CIFAR-10 pickle: {error}") from None
    if not isinstance(content, dict):
        raise InputError(f"{path}: malformed CIFAR-10 file: holds a {type(content).__name__}, "
                         f"not a dict")
    return content


def _read_cifar_batch(path, n_classes):
    content = _unpickle(path)
    missing = [key for key in (b"data", b"labels") if key not in content]
    if missing:
        raise InputError(f"{path}: malformed CIFAR-10 batch: no key {missing[0]!r} "
                         f"(keys: {sorted(content, key=repr)})")
    data, labels = content[b"data"], content[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * CIFAR_SIDE * CIFAR_SIDE:
        described = (f"{data.shape} {data.dtype}" if isinstance(data, np.ndarray)
                     else type(data).__name__)
        raise InputError(f"{path}: malformed CIFAR-10 batch: b'data' is {described}, "
                         f"not (N, 3072) uint8")
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{path}: malformed CIFAR-10 batch: b'labels' is not a list of integers")
    if len(labels) != len(data):
        raise InputError(f"{path}: {len(labels)} labels for {len(data)} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise InputError(f"{path}: a label is outside 0..{n_classes - 1}")
    return data, labels.astype(np.int64)


def _read_cifar_classes(path):
    content = _unpickle(path)
    names = content.get(b"label_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, bytes) for n in names):
        raise InputError(f"{path}: malformed CIFAR-10 metadata: no list of byte strings under "
                         f"b'label_names' (keys: {sorted(content, key=repr)})")
    return tuple(name.decode("ascii", "replace") for name in names)


def load_cifar10(data_dir, *, size=None, levels=None):
    """CIFAR-10 from ``data_dir``, the ``cifar-10-batches-py`` directory of the python archive.

    Nothing is downloaded. The images are made grey with :func:`luma` (32x32), block-averaged with
    :func:`downsample` to ``size`` (an int or ``(H, W)`` dividing 32x32, e.g. 16 or 8; default 32),
    and quantised to ``levels`` grey levels (default 256) with :func:`quantise`. The data set holds
    ``data_batch_1`` .. ``data_batch_5`` then ``test_batch``, in file order; ``held_out`` marks the
    ``test_batch`` images, so :func:`split` gives CIFAR-10's own training and test sets.
    """
    if data_dir is None:
        raise InputError("the cifar10 data set needs --data-dir: the cifar-10-batches-py directory "
                         "of the CIFAR-10 python archive (nothing is downloaded)")
    directory = Path(data_dir)
    if not directory.is_dir():
        raise InputError(f"{directory}: no such directory (the cifar-10-batches-py directory of the "
                         f"CIFAR-10 python archive)")
    if (directory / "cifar-10-batches-py").is_dir() and not (directory / CIFAR_META_FILE).exists():
        raise InputError(f"{directory}: holds cifar-10-batches-py; give that directory instead")
    size = _output_size(size, (CIFAR_SIDE, CIFAR_SIDE), directory)
    levels = _check_levels(levels)
    classes = _read_cifar_classes(directory / CIFAR_META_FILE)

    images, labels, held_out = [], [], []
    for file_name in CIFAR_TRAIN_FILES + (CIFAR_TEST_FILE,):
        data, batch_labels = _read_cifar_batch(directory / file_name, len(classes))
        # each row is the red, green and blue planes of a 32x32 image, row-major
        planes = data.reshape(len(data), 3, CIFAR_SIDE, CIFAR_SIDE)
        gray = luma(planes[:, 0], planes[:, 1], planes[:, 2])
        images.append(_reduce(gray, size, levels))
        labels.append(batch_labels)
        held_out.append(np.full(len(data), file_name == CIFAR_TEST_FILE))
    return Dataset(name="cifar10", images=np.concatenate(images), labels=np.concatenate(labels),
                   classes=classes, max_value=levels - 1, source=str(directory),
                   held_out=np.concatenate(held_out))


def _image_to_gray(image, path):
    """An opened Pillow image as an ``(H, W)`` uint8 grey array; refuses what it cannot map
    exactly."""
    mode = image.mode
    if mode == "1":
        image, mode = image.convert("L"), "L"
    elif mode in ("P", "PA"):
        image, mode = image.convert("RGBA"), "RGBA"
    if mode not in ("L", "LA", "RGB", "RGBA"):
        raise InputError(f"{path}: image mode {mode} is not supported; save it as 8-bit grey or RGB")
    pixels = np.asarray(image)
    if mode in ("LA", "RGBA"):
        if (pixels[..., -1] != 255).any():
            raise InputError(f"{path}: has transparent pixels; flatten it onto a background first")
        pixels = pixels[..., :-1]
    if mode.startswith("L"):
        return pixels.reshape(pixels.shape[:2]).astype(np.uint8)
    return luma(pixels[..., 0], pixels[..., 1], pixels[..., 2])


def _read_image(path):
    try:
        from PIL import Image
    except ImportError:  # Pillow comes with matplotlib, so this is a broken installation
        raise InputError(f"{path}: reading PNG or JPEG files needs Pillow (pip install pillow)") \
            from None
    try:
        with Image.open(path) as image:
            image.load()
            return _image_to_gray(image, path)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise InputError(f"{path}: cannot read the image: {error}") from None


def _is_hidden(path):
    return path.name.startswith(".")


def load_folder(data_dir, *, size=None, levels=None):
    """Images from ``data_dir``, a folder with one sub-folder of images per class.

    The class names are the sub-folder names, sorted; images are read in sorted file-name order
    within each class. Files ending in one of :data:`IMAGE_SUFFIXES` are read (with Pillow) and made
    grey (:func:`luma` for colour); all must have the same size. ``size`` and ``levels`` work as in
    :func:`load_cifar10`. Hidden entries (names starting with ".") are ignored, and so are non-image
    files directly in ``data_dir`` (a README); anything else that is not an image of a class is an
    error: images directly in ``data_dir``, other files or folders inside a class folder, empty
    class folders, transparent pixels, and images of mixed sizes.
    """
    if data_dir is None:
        raise InputError("the folder data set needs --data-dir: a folder with one sub-folder of "
                         "images per class")
    directory = Path(data_dir)
    if not directory.is_dir():
        raise InputError(f"{directory}: no such directory")
    levels = _check_levels(levels)
    entries = sorted(entry for entry in directory.iterdir() if not _is_hidden(entry))
    loose = [entry.name for entry in entries
             if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        raise InputError(f"{directory}: images directly in the folder ({', '.join(loose[:3])}); "
                         f"put them in one sub-folder per class")
    class_dirs = [entry for entry in entries if entry.is_dir()]
    if not class_dirs:
        raise InputError(f"{directory}: no images: no class sub-folders")

    files, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        for entry in sorted(e for e in class_dir.iterdir() if not _is_hidden(e)):
            if not entry.is_file() or entry.suffix.lower() not in IMAGE_SUFFIXES:
                raise InputError(f"{entry}: not a PNG or JPEG image file (a class folder holds only "
                                 f"images ending in {', '.join(IMAGE_SUFFIXES)})")
            files.append(entry)
            labels.append(label)
    filled = set(labels)
    empty = [str(d) for label, d in enumerate(class_dirs) if label not in filled]
    if not files:
        raise InputError(f"{directory}: no images: the class folders are all empty")
    if empty:
        raise InputError(f"empty class folders: {', '.join(empty)}")

    grays = [_read_image(path) for path in files]
    first = grays[0].shape
    for path, gray in zip(files, grays, strict=True):
        if gray.shape != first:
            raise InputError(f"images of mixed sizes: {files[0]} is {first[0]}x{first[1]}, "
                             f"{path} is {gray.shape[0]}x{gray.shape[1]} (height x width); "
                             f"all images must have the same size")
    size = _output_size(size, first, directory)
    return Dataset(name="folder", images=_reduce(np.stack(grays), size, levels),
                   labels=np.array(labels, dtype=np.int64),
                   classes=tuple(d.name for d in class_dirs), max_value=levels - 1,
                   source=str(directory))

