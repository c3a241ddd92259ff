"""The data sets: digits, CIFAR-10 archives written here in the real format, and image folders."""

import pickle

import numpy as np
import pytest
import sklearn.datasets
from PIL import Image
from sklearn.model_selection import train_test_split

from spinemu.host.datasets import (
    DATASETS,
    downsample,
    load_cifar10,
    load_dataset,
    load_digits,
    load_folder,
    luma,
    quantise,
    split,
)
from spinemu.host.errors import InputError

# --- digits -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_digits_representation(digits):
    reference = sklearn.datasets.load_digits()
    assert digits.name == "digits" and len(digits) == 1797 and digits.shape == (8, 8)
    assert digits.images.shape == (1797, 8, 8) and digits.images.dtype == np.uint8
    assert digits.images.min() == 0 and digits.images.max() == 16 == digits.max_value
    assert digits.labels.dtype == np.int64
    assert digits.classes == tuple("0123456789")
    assert digits.held_out is None
    # the order is load_digits' order
    np.testing.assert_array_equal(digits.images, reference.images)
    np.testing.assert_array_equal(digits.labels, reference.target)


def test_digits_split_is_the_project_rule(digits):
    train, test = split(digits)
    assert len(train) == 1257 and len(test) == 540
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))
    expected = train_test_split(np.arange(1797), test_size=0.3, random_state=0,
                                stratify=sklearn.datasets.load_digits().target)
    np.testing.assert_array_equal(train, expected[0])
    np.testing.assert_array_equal(test, expected[1])
    # stratified: every class is held out in proportion 0.3, to within one image
    per_class = np.bincount(digits.labels, minlength=10)
    held_out = np.bincount(digits.labels[test], minlength=10)
    assert (np.abs(held_out - 0.3 * per_class) <= 1).all()


def test_digits_are_deterministic_and_read_only(digits):
    again = load_dataset("digits")
    np.testing.assert_array_equal(again.images, digits.images)
    for a, b in zip(split(again), split(digits), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        digits.images[0, 0, 0] = 1
    with pytest.raises(ValueError):
        digits.labels[0] = 1


def test_digits_take_no_options():
    with pytest.raises(InputError, match="digits.*no data_dir"):
        load_dataset("digits", "/some/where")
    with pytest.raises(InputError, match="no size, levels"):
        load_dataset("digits", size=4, levels=4)


def test_unknown_dataset_names_the_valid_ones():
    assert DATASETS == ("digits", "cifar10", "folder")
    with pytest.raises(InputError, match="'mnist'.*digits, cifar10, folder"):
        load_dataset("mnist")


# --- the pixel mappings -----------------------------------------------------------------------

def test_luma_on_known_colours():
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [10, 20, 30],
                        [0, 0, 250], [0, 0, 0], [7, 7, 7]], dtype=np.uint8)
    # 76.245, 149.685, 29.07, 255, 18.15, 28.5 (rounded half up), 0, 7
    expected = [76, 150, 29, 255, 18, 29, 0, 7]
    np.testing.assert_array_equal(luma(*colours.T), expected)


def test_luma_matches_the_formula_on_random_colours():
    rgb = np.random.default_rng(0).integers(0, 256, size=(3, 5000), dtype=np.uint8)
    r, g, b = rgb.astype(float)
    # k/1000 + 0.5 is exact at the ties, and at least 0.001 away from them otherwise
    expected = np.floor((299 * r + 587 * g + 114 * b) / 1000 + 0.5)
    np.testing.assert_array_equal(luma(*rgb), expected)


def block_pattern(target, block):
    """Images whose (block x block) blocks are ``target`` plus offsets 0 .. block^2 - 1, so each
    block's mean is ``target + (block^2 - 1) / 2``: a tie that rounds half up."""
    offsets = np.arange(block * block).reshape(block, block)
    return np.kron(target, np.ones((block, block), dtype=int)) + np.tile(offsets, target.shape[-2:])


@pytest.mark.parametrize("block", [2, 4])
def test_downsample_averages_blocks(block):
    side = 32 // block
    target = np.random.default_rng(block).integers(0, 200, size=(3, side, side))
    images = block_pattern(target, block).astype(np.uint8)
    out = downsample(images, (side, side))
    assert out.dtype == np.uint8 and out.shape == (3, side, side)
    np.testing.assert_array_equal(out, target + block * block // 2)


def test_downsample_refuses_sizes_that_do_not_divide():
    with pytest.raises(ValueError, match="5x5 does not divide 32x32"):
        downsample(np.zeros((1, 32, 32), dtype=np.uint8), (5, 5))


def test_quantise():
    values = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(quantise(values, 16), values >> 4)
    np.testing.assert_array_equal(quantise(values, 2), values >= 128)
    three = quantise(values, 3)  # floor(v * 3 / 256): 0..85 -> 0, 86..170 -> 1, 171.. -> 2
    assert three[85] == 0 and three[86] == 1 and three[170] == 1 and three[171] == 2
    np.testing.assert_array_equal(np.bincount(quantise(values, 4)), [64] * 4)
    np.testing.assert_array_equal(quantise(values, 256), values)


# --- CIFAR-10 ---------------------------------------------------------------------------------

TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_pickle(path, content, protocol=2):
    with open(path, "wb") as file:
        pickle.dump(content, file, protocol=protocol)


def write_cifar(directory, per_batch=4, test=5, seed=0):
    """A CIFAR-10 python archive in the real layout, with random images; returns its content."""
    rng = np.random.default_rng(seed)
    directory.mkdir(exist_ok=True)
    write_pickle(directory / "batches.meta", {b"label_names": [c.encode() for c in CLASSES],
                                              b"num_cases_per_batch": per_batch, b"num_vis": 3072})
    content = {}
    for name in TRAIN_FILES + ["test_batch"]:
        n = test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]  # a list, as in the archive
        write_pickle(directory / name, {b"batch_label": name.encode(), b"labels": labels,
                                        b"data": data, b"filenames": [b"x.png"] * n})
        content[name] = (data, labels)
    return content


@pytest.fixture
def cifar(tmp_path):
    directory = tmp_path / "cifar-10-batches-py"
    return directory, write_cifar(directory)


def test_cifar_loads_in_file_order(cifar):
    directory, content = cifar
    dataset = load_dataset("cifar10", directory)
    assert dataset.name == "cifar10" and dataset.source == str(directory)
    assert dataset.images.shape == (25, 32, 32) and dataset.images.dtype == np.uint8
    assert dataset.max_value == 255 and dataset.classes == tuple(CLASSES)
    order = TRAIN_FILES + ["test_batch"]
    np.testing.assert_array_equal(dataset.labels, sum((content[n][1] for n in order), []))
    data = np.concatenate([content[n][0] for n in order]).reshape(25, 3, 32, 32)
    np.testing.assert_array_equal(dataset.images, luma(data[:, 0], data[:, 1], data[:, 2]))


def test_cifar_split_is_its_own(cifar):
    dataset = load_cifar10(cifar[0])
    train, test = split(dataset)
    np.testing.assert_array_equal(train, np.arange(20))
    np.testing.assert_array_equal(test, np.arange(20, 25))


def test_cifar_pixel_layout_and_grey_formula(tmp_path):
    directory = tmp_path / "c"
    content = write_cifar(directory)
    data = np.zeros((4, 3072), dtype=np.uint8)
    # image 0: one red, one green, one blue pixel; the planes are R, G, B, each 32x32 row-major
    data[0, 0 * 1024 + 0] = 255            # (0, 0) red
    data[0, 1 * 1024 + 1] = 255            # (0, 1) green
    data[0, 2 * 1024 + 32] = 255           # (1, 0) blue
    data[0, 2 * 1024 + 33] = 250           # (1, 1) blue 250: 28.5 rounds to 29
    data[0, [31 * 32 + 31, 1024 + 31 * 32 + 31, 2048 + 31 * 32 + 31]] = [10, 20, 30]
    write_pickle(directory / "data_batch_1", {b"data": data, b"labels": content["data_batch_1"][1]})
    image = load_cifar10(directory).images[0]
    corners = (image[0, 0], image[0, 1], image[1, 0], image[1, 1], image[31, 31])
    assert corners == (76, 150, 29, 29, 18)
    assert image.sum() == 76 + 150 + 29 + 29 + 18


@pytest.mark.parametrize("size, block", [(16, 2), (8, 4)])
def test_cifar_downsampling(tmp_path, size, block):
    directory = tmp_path / "c"
    content = write_cifar(directory)
    target = np.random.default_rng(1).integers(0, 200, size=(4, size, size))
    grey = block_pattern(target, block).astype(np.uint8).reshape(4, 1024)
    data = np.concatenate([grey, grey, grey], axis=1)  # R = G = B = v has luma v
    write_pickle(directory / "data_batch_2", {b"data": data, b"labels": content["data_batch_2"][1]})
    dataset = load_cifar10(directory, size=size)
    assert dataset.images.shape == (25, size, size) and dataset.max_value == 255
    np.testing.assert_array_equal(dataset.images[4:8], target + block * block // 2)


def test_cifar_levels(cifar):
    directory, _ = cifar
    full = load_cifar10(directory)
    small = load_dataset("cifar10", directory, size=(8, 8), levels=16)
    assert small.max_value == 15 and small.images.max() <= 15
    np.testing.assert_array_equal(small.images, downsample(full.images, (8, 8)) >> 4)
    np.testing.assert_array_equal(small.labels, full.labels)


def check_error(directory, problem, **options):
    """Loading ``directory`` fails with a InputError that names ``problem``; returns the message."""
    with pytest.raises(InputError, match=problem) as caught:
        load_cifar10(directory, **options)
    return str(caught.value)


def test_cifar_directory_errors(tmp_path, cifar):
    with pytest.raises(InputError, match="needs --data-dir"):
        load_dataset("cifar10")
    missing = tmp_path / "nowhere"
    assert str(missing) in check_error(missing, "no such directory")
    # the parent of cifar-10-batches-py: the message points at the right directory
    assert str(tmp_path) in check_error(tmp_path, "holds cifar-10-batches-py")


@pytest.mark.parametrize("name", ["batches.meta", "data_batch_3", "test_batch"])
def test_cifar_missing_file(cifar, name):
    directory, _ = cifar
    (directory / name).unlink()
    assert str(directory / name) in check_error(directory, "missing CIFAR-10 file")


@pytest.mark.parametrize("content, problem", [
    (b"not a pickle at all", "not a readable CIFAR-10 pickle"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})[:-20],
     "not a readable CIFAR-10 pickle"),
    (pickle.dumps([1, 2, 3]), "holds a list, not a dict"),
])
def test_cifar_unreadable_batch(cifar, content, problem):
    directory, _ = cifar
    (directory / "data_batch_4").write_bytes(content)
    assert str(directory / "data_batch_4") in check_error(directory, problem)


@pytest.mark.parametrize("batch, problem", [
    ({b"data": np.zeros((2, 3072), np.uint8)}, "no key b'labels'"),
    ({b"labels": [0, 1]}, "no key b'data'"),
    ({b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 1]},
     r"\(2, 3071\) uint8, not \(N, 3072\)"),
    ({b"data": np.zeros((2, 3072), np.int16), b"labels": [0, 1]}, "int16, not"),
    ({b"data": np.zeros((2, 32, 32, 3), np.uint8), b"labels": [0, 1]}, r"\(2, 32, 32, 3\)"),
    ({b"data": [[0] * 3072] * 2, b"labels": [0, 1]}, "b'data' is list"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1, 2]}, "3 labels for 2 images"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "1 labels for 2 images"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"label is outside 0\.\.9"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, -1]}, r"label is outside 0\.\.9"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0.0, 1.0]}, "not a list of integers"),
])
def test_cifar_malformed_batch(cifar, batch, problem):
    directory, _ = cifar
    write_pickle(directory / "test_batch", batch)
    message = check_error(directory, problem)
    assert str(directory / "test_batch") in message


def test_cifar_malformed_meta(cifar):
    directory, _ = cifar
    write_pickle(directory / "batches.meta", {b"num_vis": 3072})
    assert str(directory / "batches.meta") in check_error(directory, "b'label_names'")


def test_cifar_reads_pickles_of_every_numpy_and_protocol(cifar):
    directory, content = cifar
    data, labels = content["data_batch_1"]
    expected = load_cifar10(directory).images
    for protocol in (2, 3, 4, 5):
        write_pickle(directory / "data_batch_1", {b"data": data, b"labels": labels}, protocol)
        np.testing.assert_array_equal(load_cifar10(directory).images, expected)
    # the archive itself was written by Python 2 and numpy 1, which name numpy.core
    old = pickle.dumps({b"data": data, b"labels": labels}, protocol=2)
    (directory / "data_batch_1").write_bytes(
        old.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    np.testing.assert_array_equal(load_cifar10(directory).images, expected)


class _Opens:
    """Unpickles by calling open(): it would create ``path`` if the loader ran it."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_cifar_refuses_pickles_that_run_code(cifar, tmp_path):
    directory, _ = cifar
    marker = tmp_path / "ran"
    write_pickle(directory / "data_batch_5", {b"data": _Opens(marker), b"labels": []})
    check_error(directory, "refers to (io|builtins).open.*refusing")
    assert not marker.exists()


@pytest.mark.parametrize("options, problem", [
    ({"size": 5}, "cannot block-average 32x32 images to 5x5"),
    ({"size": (32, 12)}, "to 32x12"),
    ({"size": 0}, "size must be"),
    ({"size": (8, 8, 8)}, "size must be"),
    ({"levels": 1}, "levels must be an integer 2..256"),
    ({"levels": 257}, "levels must be"),
    ({"levels": 4.0}, "levels must be"),
])
def test_cifar_bad_options(cifar, options, problem):
    check_error(cifar[0], problem, **options)


# --- image folders ----------------------------------------------------------------------------

def save(path, array, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path, **kwargs)


@pytest.fixture
def folder(tmp_path):
    """Three classes of 4x6 (H x W) images, grey and colour PNGs; returns (root, expected)."""
    rng = np.random.default_rng(2)
    root = tmp_path / "images"
    expected = []
    for label, name in enumerate(["ant", "bee", "cat"]):  # created out of order on purpose below
        for i in range(4):
            grey = rng.integers(0, 256, size=(4, 6), dtype=np.uint8)
            expected.append((name, f"{i}.png", grey, label))
    for name, file_name, grey, _ in reversed(expected):
        if file_name == "1.png":  # a colour image whose luma is the grey image
            save(root / name / file_name, np.stack([grey] * 3, axis=-1))
        elif file_name == "2.png":  # opaque RGBA
            save(root / name / file_name, np.stack([grey] * 3 + [np.full_like(grey, 255)], axis=-1))
        else:
            save(root / name / file_name, grey)
    (root / "README.txt").write_text("a data set")
    (root / "bee" / ".DS_Store").write_bytes(b"\0")
    return root, expected


def test_folder_loads(folder):
    root, expected = folder
    dataset = load_dataset("folder", root)
    assert dataset.name == "folder" and dataset.source == str(root)
    assert dataset.classes == ("ant", "bee", "cat")
    assert dataset.images.shape == (12, 4, 6) and dataset.images.dtype == np.uint8
    assert dataset.max_value == 255 and dataset.held_out is None
    np.testing.assert_array_equal(dataset.images, [grey for _, _, grey, _ in expected])
    np.testing.assert_array_equal(dataset.labels, [label for *_, label in expected])


def test_folder_colour_is_luma(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, size=(5, 5, 3), dtype=np.uint8)
    save(tmp_path / "a" / "x.png", rgb)
    dataset = load_folder(tmp_path)
    np.testing.assert_array_equal(dataset.images[0], luma(rgb[..., 0], rgb[..., 1], rgb[..., 2]))


def test_folder_reads_jpeg(tmp_path):
    save(tmp_path / "a" / "x.JPG", np.full((8, 8, 3), 120, dtype=np.uint8), quality=95)
    save(tmp_path / "b" / "y.jpeg", np.full((8, 8), 30, dtype=np.uint8), quality=95)
    dataset = load_folder(tmp_path)
    assert dataset.images.shape == (2, 8, 8)
    assert np.abs(dataset.images[0].astype(int) - 120).max() <= 2
    assert np.abs(dataset.images[1].astype(int) - 30).max() <= 2


def test_folder_size_and_levels(folder):
    root, _ = folder
    full = load_folder(root)
    small = load_folder(root, size=(2, 3), levels=4)
    assert small.images.shape == (12, 2, 3) and small.max_value == 3
    np.testing.assert_array_equal(small.images, quantise(downsample(full.images, (2, 3)), 4))
    with pytest.raises(InputError, match=f"{root}: cannot block-average 4x6 images to 3x3"):
        load_folder(root, size=3)


def test_folder_split_is_stratified(folder):
    dataset = load_folder(folder[0])
    train, test = split(dataset)
    expected = train_test_split(np.arange(12), test_size=0.3, random_state=0,
                                stratify=dataset.labels)
    np.testing.assert_array_equal(train, expected[0])
    np.testing.assert_array_equal(test, expected[1])


def test_folder_split_refuses_a_class_of_one(tmp_path):
    for name, count in (("a", 5), ("b", 1)):
        for i in range(count):
            save(tmp_path / name / f"{i}.png", np.zeros((2, 2)))
    with pytest.raises(InputError, match=f"{tmp_path}: cannot split folder"):
        split(load_folder(tmp_path))


def test_folder_mixed_sizes_name_both_files(folder):
    root, _ = folder
    save(root / "bee" / "3.png", np.zeros((5, 6)))
    with pytest.raises(InputError, match="mixed sizes") as caught:
        load_folder(root)
    message = str(caught.value)
    assert f"{root / 'ant' / '0.png'} is 4x6, {root / 'bee' / '3.png'} is 5x6 (height x width)" \
        in message


def test_folder_empty_classes_are_named(folder):
    root, _ = folder
    (root / "dog").mkdir()
    (root / "emu").mkdir()
    (root / "emu" / ".hidden").write_text("")
    with pytest.raises(InputError, match="empty class folders") as caught:
        load_folder(root)
    assert f"{root / 'dog'}, {root / 'emu'}" in str(caught.value)


def test_folder_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(InputError, match=f"{tmp_path}: no images: no class sub-folders"):
        load_folder(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(InputError, match=f"{tmp_path}: no images: the class folders are all empty"):
        load_folder(tmp_path)


def test_folder_directory_errors(tmp_path):
    with pytest.raises(InputError, match="needs --data-dir"):
        load_dataset("folder")
    with pytest.raises(InputError, match=f"{tmp_path / 'nope'}: no such directory"):
        load_folder(tmp_path / "nope")


@pytest.mark.parametrize("write, problem", [
    (lambda path: path.write_bytes(b"these bytes are no PNG"), "cannot read the image"),
    (lambda path: (save(path, np.zeros((4, 6))), path.write_bytes(path.read_bytes()[:40])),
     "cannot read the image"),
    (lambda path: save(path, np.zeros((4, 6, 4))), "transparent pixels"),
    (lambda path: Image.fromarray(np.zeros((4, 6), np.uint16)).save(path),
     "mode I;16 is not supported"),
])
def test_folder_unreadable_images(folder, write, problem):
    root, _ = folder
    path = root / "cat" / "2.png"
    write(path)
    with pytest.raises(InputError, match=problem) as caught:
        load_folder(root)
    assert str(path) in str(caught.value)


def test_folder_refuses_what_is_not_an_image_of_a_class(folder):
    root, _ = folder
    save(root / "loose.png", np.zeros((4, 6)))
    with pytest.raises(InputError, match=f"{root}: images directly in the folder \\(loose.png\\)"):
        load_folder(root)
    (root / "loose.png").unlink()
    (root / "cat" / "labels.csv").write_text("")
    with pytest.raises(InputError, match="labels.csv: not a PNG or JPEG image file"):
        load_folder(root)
    (root / "cat" / "labels.csv").unlink()
    (root / "cat" / "more").mkdir()
    with pytest.raises(InputError, match=f"{root / 'cat' / 'more'}: not a PNG or JPEG"):
        load_folder(root)
