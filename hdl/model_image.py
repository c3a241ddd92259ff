"""The model image: one network of dense spin-neuron layers as bytes, the format the design loads.

Layout (``docs/engine.md``, "The model image"), all little-endian:

    header   magic b"SPNM", version u16, layers L u16, input_bits u8, weight_bits u8,
             a_width u8, theta_frac u8, sigma_width u8, sigma_frac u8, sizes (L+1) x u16
    layer l  weights  N_l x N_(l-1) int8, row-major (row = neuron)      for l = 1..L
             bias     N_l x int32   (in units of the pre-activation a)
             theta    N_l x int32   (codes of NeuronFormat.theta)
             sigma    N_l x uint16  (codes of NeuronFormat.sigma)
    noise    (version 2 only) name length u8, name (ASCII), the noise table's 1024 bytes
             (NoiseTable.to_bytes, docs/noise.md)
    trailer  CRC-32 (ISO-HDLC, as zlib.crc32) of everything before it, u32

An image whose noise table is the Gaussian is written as version 1, without the noise section, so
images made before noise tables existed keep their bytes; version 2 carries any other table.

Layer 0 is the input: ``N_0`` unsigned ``input_bits``-bit values. Every neuron computes
``a = bias + sum(W x)`` and fires with ``a + sigma z > theta``. A model is valid only if no
pre-activation can leave the ``a_width``-bit format for any input, so the design never overflows.
"""

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .formats import NeuronFormat
from .noise_table import ENTRIES, NoiseTable, TableError, gaussian

__all__ = ["MAGIC", "VERSION", "ModelImage", "ModelError", "random_model"]

MAGIC = b"SPNM"
VERSION = 2            # the newest; version 1 is the same without the noise section
_HEADER = struct.Struct("<4sHHBBBBBB")


class ModelError(ValueError):
    """A model image that is malformed or inconsistent; the message says what and where."""


@dataclass(frozen=True, eq=False)
class ModelImage:
    """A network of dense spin-neuron layers with integer parameters.

    ``weights[l]`` has shape ``(sizes[l+1], sizes[l])``; ``bias``, ``theta`` and ``sigma`` hold one
    value per neuron of each layer (codes in ``fmt``); ``noise`` is the noise table every neuron
    draws from (:mod:`~spinemu.hdl.noise_table`).
    """

    sizes: tuple
    input_bits: int
    weight_bits: int
    fmt: NeuronFormat
    weights: tuple
    bias: tuple
    theta: tuple
    sigma: tuple
    noise: NoiseTable = field(default_factory=gaussian)

    def __post_init__(self):
        self.validate()

    @property
    def layers(self):
        return len(self.sizes) - 1

    def validate(self):
        """Raise :class:`ModelError` unless every array has its shape and every value its range."""
        sizes = self.sizes
        if len(sizes) < 2 or any(not 1 <= n <= 0xFFFF for n in sizes):
            raise ModelError(f"layer sizes must be 2+ values in 1..65535, not {sizes}")
        if not 1 <= self.input_bits <= 16:
            raise ModelError(f"input_bits must be 1..16, not {self.input_bits}")
        if not 2 <= self.weight_bits <= 8:
            raise ModelError(f"weight_bits must be 2..8, not {self.weight_bits}")
        if not isinstance(self.noise, NoiseTable):
            raise ModelError(f"noise must be a NoiseTable, not {type(self.noise).__name__}")
        fields = {"weights": self.weights, "bias": self.bias, "theta": self.theta,
                  "sigma": self.sigma}
        for name, arrays in fields.items():
            if len(arrays) != self.layers:
                raise ModelError(f"{name}: {len(arrays)} arrays for {self.layers} layers")
        w_lo, w_hi = -(1 << (self.weight_bits - 1)), (1 << (self.weight_bits - 1)) - 1
        a_fmt, t_fmt, s_fmt = self.fmt.a, self.fmt.theta, self.fmt.sigma
        x_max = (1 << self.input_bits) - 1
        for l in range(self.layers):
            n_out, n_in = sizes[l + 1], sizes[l]
            shapes = {"weights": (n_out, n_in), "bias": (n_out,), "theta": (n_out,),
                      "sigma": (n_out,)}
            for name, shape in shapes.items():
                if np.shape(fields[name][l]) != shape:
                    raise ModelError(f"layer {l + 1} {name}: shape {np.shape(fields[name][l])}, "
                                     f"expected {shape}")
            w = np.asarray(self.weights[l])
            _check_range(w, w_lo, w_hi, f"layer {l + 1} weights ({self.weight_bits}-bit)")
            _check_range(self.bias[l], a_fmt.min_code, a_fmt.max_code, f"layer {l + 1} bias")
            _check_range(self.theta[l], t_fmt.min_code, t_fmt.max_code, f"layer {l + 1} theta")
            _check_range(self.sigma[l], 1, s_fmt.max_code, f"layer {l + 1} sigma")
            # The largest |a| any input can produce: inputs are 0..x_max (layer 0) or spins 0/1.
            x = x_max if l == 0 else 1
            reach = np.maximum(np.where(w > 0, w, 0).sum(axis=1), -np.where(w < 0, w, 0).sum(axis=1))
            worst = np.abs(np.asarray(self.bias[l], dtype=np.int64)) + x * reach
            if worst.max() > a_fmt.max_code:
                j = int(worst.argmax())
                raise ModelError(f"layer {l + 1} neuron {j}: |bias| + sum|W| x_max = {worst[j]} "
                                 f"overflows the {self.fmt.a_width}-bit pre-activation")

    def to_bytes(self):
        """The image as bytes (see the module docstring)."""
        f = self.fmt
        version = 1 if self.noise == gaussian() else VERSION
        parts = [_HEADER.pack(MAGIC, version, self.layers, self.input_bits, self.weight_bits,
                              f.a_width, f.theta_frac, f.sigma_width, f.sigma_frac),
                 np.asarray(self.sizes, dtype="<u2").tobytes()]
        for l in range(self.layers):
            parts += [np.asarray(self.weights[l], dtype="i1").tobytes(),
                      np.asarray(self.bias[l], dtype="<i4").tobytes(),
                      np.asarray(self.theta[l], dtype="<i4").tobytes(),
                      np.asarray(self.sigma[l], dtype="<u2").tobytes()]
        if version > 1:
            name = self.noise.name.encode("ascii", "replace")[:255]
            parts += [bytes([len(name)]), name, self.noise.to_bytes()]
        body = b"".join(parts)
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data, *, source="model image"):
        """Parse an image; :class:`ModelError` naming ``source`` and the problem if it is bad."""
        data = bytes(data)
        if len(data) < _HEADER.size + 4 or data[:4] != MAGIC:
            raise ModelError(f"{source}: not a spinemu model image (no {MAGIC!r} header)")
        body, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
        if zlib.crc32(body) != crc:
            raise ModelError(f"{source}: CRC mismatch (the file is damaged or truncated)")
        magic, version, layers, input_bits, weight_bits, a_width, tf, sw, sf = \
            _HEADER.unpack_from(body)
        if not 1 <= version <= VERSION:
            raise ModelError(f"{source}: model image version {version}, this spinemu reads 1 to "
                             f"{VERSION}")
        offset = _HEADER.size
        try:
            sizes = tuple(int(n) for n in np.frombuffer(body, "<u2", layers + 1, offset))
            offset += 2 * (layers + 1)
            arrays = {"weights": [], "bias": [], "theta": [], "sigma": []}
            for l in range(layers):
                n_out, n_in = sizes[l + 1], sizes[l]
                for name, dtype, count in [("weights", "i1", n_out * n_in), ("bias", "<i4", n_out),
                                           ("theta", "<i4", n_out), ("sigma", "<u2", n_out)]:
                    a = np.frombuffer(body, dtype, count, offset).astype(np.int64)
                    offset += a.size * np.dtype(dtype).itemsize
                    arrays[name].append(a.reshape(n_out, n_in) if name == "weights" else a)
            noise = gaussian()
            if version > 1:
                size = body[offset]
                name = body[offset + 1:offset + 1 + size].decode("ascii", "replace")
                offset += 1 + size
                table = body[offset:offset + 4 * ENTRIES]
                offset += 4 * ENTRIES
                if len(table) < 4 * ENTRIES:
                    raise ValueError
                noise = NoiseTable.from_bytes(table, name, source=f"{source}: noise table")
        except TableError as error:
            raise ModelError(str(error)) from None
        except (ValueError, IndexError):
            raise ModelError(f"{source}: shorter than its header says ({len(data)} bytes)") from None
        if offset != len(body):
            raise ModelError(f"{source}: {len(body) - offset} bytes after the last layer")
        try:
            fmt = NeuronFormat(a_width=a_width, theta_frac=tf, sigma_width=sw, sigma_frac=sf)
        except ValueError as error:
            raise ModelError(f"{source}: {error}") from None
        try:
            return cls(sizes, input_bits, weight_bits, fmt, *(tuple(arrays[k]) for k in arrays),
                       noise=noise)
        except ModelError as error:    # a header field or a value out of range: say where
            raise ModelError(f"{source}: {error}") from None

    @classmethod
    def read(cls, path):
        """Read and check the image in the file ``path``; :class:`ModelError` naming the file and
        the problem."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise ModelError(f"{path}: no such model file") from None
        except OSError as error:
            raise ModelError(f"{path}: cannot read the model image ({error.strerror})") from None
        return cls.from_bytes(data, source=str(path))

    @property
    def macs_per_sample(self):
        """Multiply-accumulates of one pass through layers 2..L (layer 1 is computed once)."""
        return sum(self.sizes[l] * self.sizes[l + 1] for l in range(1, self.layers))


def _check_range(values, lo, hi, what):
    values = np.asarray(values)
    if values.size and (values.min() < lo or values.max() > hi):
        bad = values.min() if values.min() < lo else values.max()
        raise ModelError(f"{what}: value {bad} outside {lo}..{hi}")


def random_model(sizes, *, seed, input_bits=5, weight_bits=8, fmt=None):
    """A random but valid model, for tests: weights spread over their range, biases, thetas and
    sigmas chosen so that neurons fire neither always nor never."""
    rng = np.random.default_rng(seed)
    sizes = tuple(int(n) for n in sizes)
    if fmt is None:
        worst = max(((1 << input_bits) - 1 if l == 0 else 1) * sizes[l] << (weight_bits - 1)
                    for l in range(len(sizes) - 1))
        fmt = NeuronFormat(a_width=max(16, int(worst).bit_length() + 2))
    w_hi = (1 << (weight_bits - 1)) - 1
    weights, bias, theta, sigma = [], [], [], []
    for l in range(len(sizes) - 1):
        n_out, n_in = sizes[l + 1], sizes[l]
        x_mean = ((1 << input_bits) - 1) / 2 if l == 0 else 0.5
        w = rng.integers(-w_hi - 1, w_hi + 1, size=(n_out, n_in))
        spread = w_hi * x_mean * np.sqrt(n_in)  # typical |sum W x|
        weights.append(w)
        bias.append(rng.integers(-int(spread), int(spread) + 1, size=n_out))
        theta.append(rng.integers(-int(spread), int(spread) + 1, size=n_out) << fmt.theta_frac)
        s = np.clip(rng.uniform(0.2, 1.0, size=n_out) * spread * (1 << fmt.sigma_frac),
                    1, fmt.sigma.max_code)
        sigma.append(s.astype(np.int64))
    return ModelImage(sizes, input_bits, weight_bits, fmt, tuple(weights), tuple(bias),
                      tuple(theta), tuple(sigma))
