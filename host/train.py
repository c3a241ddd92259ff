"""Train the all-spin network: device-faithful, quantization-aware, exported as the integer image.

The network (``docs/training.md`` is the spec) is a stack of dense layers of spin neurons. Its
input is what an engine job gets (:func:`spinemu.hdl.memory_map.job_inputs`): the image with its
hidden pixels zeroed (integers ``0 .. max_value``), then the mask (0/1). Neuron ``j`` of a layer
computes, in units of its own noise width,

    u_j = sum_i w_ji x_i + b_j          and fires with  P(s_j = 1) = 1 - F(-u_j),

which is the device's ``1 - F((theta - a) / sigma)`` with ``a = sigma u + theta`` in the design's
integer units. ``F`` is the standardized threshold distribution: the standard normal
(``P = Phi(u)``) unless the calibration maps its neurons with another noise table, and then the
table's continuous cell distribution (:class:`NoiseShape`). Hidden and output units are spins; an
output pixel is the fraction of S samples in which its spin fired.

**Training.** Forward passes *sample* every hidden spin (``s = [u + z > 0]``, ``z ~ F``), K times
per image. The backward pass replaces ``d s / d u`` by ``d (1 - F(-u)) / d u = f(-u)``, the
derivative of the spin's exact expectation (the straight-through estimator with the expectation's
own derivative: ``phi(u)`` for the Gaussian; see ``docs/training.md`` for why and what it costs).
The output layer is not sampled in training: its loss is the binary cross-entropy between each
target pixel ``image / max_value`` and ``mean_K (1 - F(-u_out))``, the expected output given the K
sampled hidden states, which is what ``counts / S`` estimates. Hidden pixels weigh 1, known pixels
:attr:`TrainConfig.known_weight`. Every training image gets a fresh occlusion mask each epoch, of a
kind drawn uniformly from :data:`~spinemu.host.occlusion.OCCLUSIONS`.

**Quantization.** Each neuron's noise width ``sigma_j`` (in integer pre-activation units) is a code
of the design's format, and it sets the neuron's weight grid: ``W = round(w sigma_j)`` in
``weight_bits``-bit integers, ``B = round(b sigma_j + theta_j)``. Without a calibration
``theta_j = 0`` and ``sigma_j`` is the largest code that keeps the neuron's largest weight in range
(per-neuron scaling); with a calibration both are the calibrated device's codes (see
:func:`load_calibration`) and the weights are clipped to what the device's sigma allows. The last
:attr:`TrainConfig.qat_fraction` of the epochs trains through this rounding (straight-through), so
the exported integers *are* the network of the last step: ``(W x + B - theta) / sigma == u``. The
image carries the noise table, so the design and the golden model draw from the same ``F``.

Determinism: torch runs on one thread; the masks, the order and every noise draw come from the
seed, so the same arguments give a byte-identical model image (on the same platform and torch).
"""

import functools
import hashlib
import json
import math
import time
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from spinemu.hdl.formats import NeuronFormat
from spinemu.hdl.model_image import ModelError, ModelImage
from spinemu.hdl.noise_table import CODE_SIGMA, NoiseTable, gaussian
from spinemu.sim import golden

from .calibration import noise_entry, noise_from_entry, read_neuron_codes, read_noise_table
from .datasets import split
from .errors import InputError
from .evaluate import ReferenceClassifier, train_classifier
from .occlusion import OCCLUSIONS, occlusion_mask

__all__ = [
    "FORMAT", "TrainConfig", "NeuronCodes", "NoiseShape", "Trained", "FloatNetwork",
    "load_calibration", "network_sizes", "train", "export", "save_companion", "load_companion",
    "companion_path", "sample_counts", "float_noise", "COMPANION_FORMAT", "DENSITY_FLOOR",
]

#: The default design's neuron format (``EngineConfig().fmt``): a Q20.0, theta Q20.8, sigma UQ8.8.
FORMAT = NeuronFormat(a_width=20)
COMPANION_FORMAT = "spinemu training companion"
COMPANION_VERSION = 1
#: The least slope the backward pass of a shaped neuron uses (about the standard normal's density at
#: 4 sigma): where a table's density is tinier, or zero beyond its last drawn code, a neuron would
#: otherwise stop learning.
DENSITY_FLOOR = 1e-4


@dataclass(frozen=True)
class TrainConfig:
    """What ``spinemu train`` can change; the defaults made the shipped digits model."""

    hidden: tuple = (256, 192)     #: hidden layer sizes (the iCEBreaker's reference network)
    epochs: int = 300
    batch: int = 64                #: images per step
    samples: int = 8               #: K: sampled hidden states per image per step
    lr: float = 3e-3               #: Adam's step size, cosine-annealed to 0 over the epochs
    known_weight: float = 0.2      #: loss weight of a known pixel (a hidden one weighs 1)
    qat_fraction: float = 0.25     #: the last part of the epochs trains through the rounding
    weight_bits: int = 8
    seed: int = 0
    classifier_epochs: int = 200   #: epochs of the reference classifier

    def check(self):
        """InputError naming the option for any value out of range."""
        rules = [("--hidden", all(1 <= n <= 0xFFFF for n in self.hidden) and len(self.hidden) >= 1,
                  "one or more layer sizes 1..65535"),
                 ("--epochs", self.epochs >= 1, "at least 1"),
                 ("--batch", self.batch >= 1, "at least 1"),
                 ("--train-samples", self.samples >= 1, "at least 1"),
                 ("--lr", self.lr > 0 and math.isfinite(self.lr), "a positive number"),
                 ("--known-weight", 0 <= self.known_weight < math.inf, "0 or more"),
                 ("--qat-fraction", 0 <= self.qat_fraction <= 1, "0..1"),
                 ("--weight-bits", 2 <= self.weight_bits <= 8, "2..8"),
                 ("--seed", 0 <= self.seed < 1 << 63, "0..2^63-1")]
        for option, ok, need in rules:
            if not ok:
                raise InputError(f"{option} must be {need}")


@dataclass(frozen=True)
class NeuronCodes:
    """Fixed per-neuron codes from a calibration: ``theta[l]``, ``sigma[l]`` (int64 arrays, one
    code per neuron of layer ``l + 1``, in :data:`FORMAT`), where they came from, and the noise
    table the calibration maps its neurons with."""

    theta: tuple
    sigma: tuple
    source: str
    device_neurons: int
    noise: NoiseTable = field(default_factory=gaussian)


def network_sizes(dataset, hidden):
    """``(2 * pixels, *hidden, pixels)``: image and mask in, one spin per pixel out."""
    pixels = int(np.prod(dataset.shape))
    return (2 * pixels, *(int(n) for n in hidden), pixels)


def load_calibration(path, sizes, fmt=FORMAT):
    """Per-neuron codes for a network of ``sizes`` from ``spinemu calibrate``'s CALIB.json.

    The JSON's ``neurons`` list holds the emulated neurons' ``theta_code`` and ``sigma_code`` in
    the design's formats (``docs/calibration.md``). Network neuron ``k``, counted through the
    layers in order (layer 1's neurons first), gets calibration neuron ``k mod M`` of the ``M``
    listed: run ``spinemu calibrate --neurons N`` with N = the network's neurons to give every one
    its own drawn device. The codes are used as they are (the calibration's ``--scale`` sets the
    weights' grid), and so is the file's noise table (the Gaussian when it has none).
    :class:`~spinemu.host.errors.InputError` naming the file and the problem otherwise.
    """
    theta, sigma = read_neuron_codes(path, fmt)
    per_layer_t, per_layer_s, first = [], [], 0
    for n in sizes[1:]:
        index = (first + np.arange(n)) % len(theta)
        per_layer_t.append(theta[index])
        per_layer_s.append(sigma[index])
        first += n
    return NeuronCodes(tuple(per_layer_t), tuple(per_layer_s), str(Path(path)), len(theta),
                       read_noise_table(path))


class NoiseShape:
    """``F`` of a noise table as training and the float model use it: the table's continuous cell
    distribution (:meth:`~spinemu.hdl.noise_table.NoiseTable.cell_cdf`), whose CDF is piecewise
    linear on the 2048 code cells of ``[-8, 8]`` and whose density is piecewise constant.

    :meth:`draw` turns uniform numbers into draws of ``z`` (numpy); :meth:`expectation` and
    :meth:`spins` are the torch side: ``1 - F(-u)`` and sampled spins ``[u + z > 0]``, both with
    the backward slope :meth:`slope`.
    """

    def __init__(self, table):
        self.edges, cdf = table.cell_cdf()
        self.cdf = cdf / cdf[-1]
        self.step = float(self.edges[1] - self.edges[0])
        self.density = np.diff(self.cdf) / self.step          # per cell
        self.table = table
        self._grids = {}

    def draw(self, p):
        """Draws of ``z`` from the cell distribution, one per uniform number ``p`` in ``[0, 1)``
        (numpy): the top 32 bits of ``p`` are a noise block's uniform word, which the golden model
        maps to a code as the block does (:func:`~spinemu.sim.golden.words_to_codes`), and the bits
        below place ``z`` uniformly in that code's cell ``[(c - 1) / 256, (c + 1) / 256]``: each
        code's mass spread over its cell, exactly."""
        w = np.asarray(p, dtype=np.float64) * 2.0 ** 32
        words = w.astype(np.uint64)
        codes = golden.words_to_codes(words, self.table)
        return (codes + 2 * (w - words) - 1) / CODE_SIGMA

    def _grid(self, dtype):
        """``(survival at the edges, density per cell)`` as torch tensors of ``dtype``."""
        if dtype not in self._grids:
            torch = _torch()
            self._grids[dtype] = (torch.tensor(1 - self.cdf, dtype=dtype),
                                  torch.tensor(self.density, dtype=dtype))
        return self._grids[dtype]

    def _cell(self, x):
        """``(cell index, position in the cell 0..1)`` of ``x``, clamped to the grid."""
        t = ((x - self.edges[0]) / self.step).clamp(0, len(self.density))
        i = t.floor().clamp(max=len(self.density) - 1)
        return i.long(), t - i

    def survival(self, x):
        """``1 - F(x)`` of a torch tensor, interpolated on the grid (:meth:`expectation` is the
        form that training differentiates)."""
        surv, _ = self._grid(x.dtype)
        i, frac = self._cell(x)
        return surv[i] + frac * (surv[i + 1] - surv[i])

    def slope(self, u):
        """The backward pass's ``d (1 - F(-u)) / d u``: the cell density ``f(-u)``, but at least
        :data:`DENSITY_FLOOR` (beyond the grid too)."""
        _, density = self._grid(u.dtype)
        x = -u
        i, _ = self._cell(x)
        inside = (x >= self.edges[0]) & (x < self.edges[-1])
        return _torch().where(inside, density[i], 0.0).clamp(min=DENSITY_FLOOR)

    def expectation(self, u):
        """``P(fire) = 1 - F(-u)`` (torch), differentiable with :meth:`slope`."""
        return _functions().Expectation.apply(u, self)

    def spins(self, u, generator):
        """Sampled spins ``[u + z > 0]``, ``z`` the :meth:`draw` of uniforms from ``generator``
        (in float64), with :meth:`slope` as their backward pass."""
        torch = _torch()
        p = torch.rand(u.shape, generator=generator, dtype=torch.float64)
        z = torch.from_numpy(self.draw(p.numpy())).to(u.dtype)
        return _functions().ShapedSpin.apply(u, z, self)


# ---------------------------------------------------------------------------------------------
# The network in torch


def _torch():
    import torch
    return torch


@functools.cache
def _functions():
    """The autograd functions (built on first use, so that importing needs no torch): ``Spin``, a
    Gaussian neuron's sampled spin with ``phi(u)`` backward; ``ShapedSpin`` and ``Expectation``, a
    :class:`NoiseShape` neuron's sampled spin and ``1 - F(-u)``, both with its slope backward."""
    torch = _torch()

    class Spin(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u, z):
            ctx.save_for_backward(u)
            return (u + z > 0).to(u.dtype)

        @staticmethod
        def backward(ctx, grad):
            (u,) = ctx.saved_tensors
            return grad * torch.exp(-0.5 * u * u) * (1 / math.sqrt(2 * math.pi)), None

    class ShapedSpin(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u, z, shape):
            ctx.save_for_backward(u)
            ctx.shape = shape
            return (u + z > 0).to(u.dtype)

        @staticmethod
        def backward(ctx, grad):
            (u,) = ctx.saved_tensors
            return grad * ctx.shape.slope(u), None, None

    class Expectation(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u, shape):
            ctx.save_for_backward(u)
            ctx.shape = shape
            return shape.survival(-u)

        @staticmethod
        def backward(ctx, grad):
            (u,) = ctx.saved_tensors
            return grad * ctx.shape.slope(u), None

    return types.SimpleNamespace(Spin=Spin, ShapedSpin=ShapedSpin, Expectation=Expectation)


def _round_ste(x):
    return x + (x.round() - x).detach()


def _phi_cdf(u):
    torch = _torch()
    return 0.5 * (1 + torch.erf(u * (1 / math.sqrt(2))))


class _Net:
    """The trainable network: float parameters in sigma units, the quantizer, and the neurons'
    ``F``: the calibration's noise table (``codes.noise``; the Gaussian without codes). The
    Gaussian's neurons use ``Phi`` and ``torch.randn`` itself; any other table's its
    :class:`NoiseShape`."""

    def __init__(self, sizes, input_scale, codes, fmt, weight_bits, generator):
        torch = _torch()
        self.sizes, self.fmt, self.codes = sizes, fmt, codes
        self.noise = gaussian() if codes is None else codes.noise
        self.shape = None if self.noise == gaussian() else NoiseShape(self.noise)
        self.w_hi = (1 << (weight_bits - 1)) - 1
        self.input_scale = torch.tensor(input_scale, dtype=torch.float32)
        self.weights, self.biases = [], []
        for l in range(len(sizes) - 1):
            n_in, n_out = sizes[l], sizes[l + 1]
            gain = 2.0 if l == 0 else 1.0
            w = torch.randn(n_out, n_in, generator=generator) * (gain / math.sqrt(n_in))
            self.weights.append(w.requires_grad_())
            self.biases.append(torch.zeros(n_out).requires_grad_())

    def parameters(self):
        return self.weights + self.biases

    def effective(self, l):
        """Layer ``l``'s weights per raw input value (sigma units)."""
        w = self.weights[l]
        return w * self.input_scale if l == 0 else w

    def codes_of(self, l):
        """``(theta_code, sigma_code)`` int64 arrays of layer ``l`` for the current weights."""
        if self.codes is not None:
            return self.codes.theta[l], self.codes.sigma[l]
        w = self.effective(l).detach().double().abs().amax(dim=1).numpy()
        one = 1 << self.fmt.sigma_frac
        with np.errstate(divide="ignore"):
            sigma = np.floor(self.w_hi * one / w)
        sigma = np.clip(np.nan_to_num(sigma, posinf=self.fmt.sigma.max_code), 1,
                        self.fmt.sigma.max_code).astype(np.int64)
        return np.zeros(len(sigma), np.int64), sigma

    def layer(self, l, quantize):
        """``(w, b)`` of layer ``l`` as the forward pass uses them (sigma units)."""
        torch = _torch()
        theta_code, sigma_code = self.codes_of(l)
        s = torch.tensor(sigma_code / (1 << self.fmt.sigma_frac), dtype=torch.float32)[:, None]
        theta = torch.tensor(theta_code / (1 << self.fmt.theta_frac), dtype=torch.float32)
        w = self.effective(l) * s
        if quantize:
            w = _round_ste(w)
        w = torch.clamp(w, -self.w_hi - 1, self.w_hi) / s
        b = self.biases[l]
        if quantize:
            b = (_round_ste(b * s[:, 0] + theta) - theta) / s[:, 0]
        return w, b

    def spins(self, u, generator):
        """Sampled spins ``[u + z > 0]``, ``z ~ F`` drawn from ``generator``, with the backward
        ``f(-u)``."""
        if self.shape is not None:
            return self.shape.spins(u, generator)
        z = _torch().randn(u.shape, generator=generator)
        return _functions().Spin.apply(u, z)

    def expectation(self, u):
        """``P(fire) = 1 - F(-u)``: ``Phi(u)`` for the Gaussian."""
        return _phi_cdf(u) if self.shape is None else self.shape.expectation(u)

    def forward(self, x, samples, quantize, generator):
        """Output pre-activations ``(batch, samples, N_L)`` with sampled hidden spins."""
        w, b = self.layer(0, quantize)
        u = (x @ w.T + b)[:, None, :].expand(-1, samples, -1)
        for l in range(1, len(self.sizes) - 1):
            h = self.spins(u, generator)
            w, b = self.layer(l, quantize)
            u = h @ w.T + b
        return u


# ---------------------------------------------------------------------------------------------
# Training


@dataclass
class Trained:
    """A trained network: the integer image, its float twin, the reference classifier, the record.

    ``float_weights[l]`` / ``float_bias[l]`` are in sigma units per raw input value (``u = W x +
    b``, fire when ``u + z > 0`` with ``z ~ F``, the image's noise table ``model.noise``): the float
    model of the ``float`` backend.
    """

    model: ModelImage
    float_weights: list
    float_bias: list
    classifier: ReferenceClassifier
    history: dict
    meta: dict = field(default_factory=dict)


def _masks(kinds, shape, rng, fixed):
    out = np.empty((len(kinds), *shape), dtype=np.uint8)
    for i, kind in enumerate(kinds):
        out[i] = occlusion_mask("random", shape, rng) if kind == "random" else fixed[kind]
    return out


def train(dataset, config=TrainConfig(), calibration=None, *, fmt=FORMAT, progress=True):
    """Train on ``dataset``'s training split; returns a :class:`Trained`.

    ``calibration``: a path to CALIB.json (see :func:`load_calibration`; its noise table is the
    neurons' ``F`` and goes into the image) or ``None`` for ideal Gaussian neurons. ``progress``:
    show a tqdm bar (on stderr). The test split is never read.
    """
    torch = _torch()
    from tqdm import tqdm

    config.check()
    sizes = network_sizes(dataset, config.hidden)
    pixels, shape, top = sizes[-1], dataset.shape, dataset.max_value
    input_bits = max(1, int(top).bit_length())
    codes = None if calibration is None else load_calibration(calibration, sizes, fmt)
    train_idx, _ = split(dataset)
    images = dataset.images[train_idx].reshape(len(train_idx), pixels).astype(np.float32)
    labels = dataset.labels[train_idx]
    targets = images / top
    fixed = {kind: occlusion_mask(kind, shape) for kind in OCCLUSIONS if kind != "random"}

    began = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        net = _Net(sizes, np.r_[np.full(pixels, 1.0 / top), np.ones(pixels)], codes, fmt,
                   config.weight_bits, generator)
        opt = torch.optim.Adam(net.parameters(), config.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.epochs)
        qat_from = config.epochs - int(round(config.qat_fraction * config.epochs))
        history = {"loss": np.zeros(config.epochs), "lr": np.zeros(config.epochs),
                   "loss_by_kind": np.zeros((config.epochs, len(OCCLUSIONS))),
                   "qat_from": qat_from}
        n = len(images)
        bar = tqdm(range(config.epochs), desc="training", unit="epoch", disable=not progress,
                   leave=False)
        for epoch in bar:
            quantize = epoch >= qat_from
            history["lr"][epoch] = opt.param_groups[0]["lr"]
            order = rng.permutation(n)
            kind_index = rng.integers(0, len(OCCLUSIONS), n)
            masks = _masks([OCCLUSIONS[k] for k in kind_index], shape, rng, fixed)
            masks = masks.reshape(n, pixels).astype(np.float32)
            total, weight_sum = 0.0, 0.0
            kind_loss, kind_count = np.zeros(len(OCCLUSIONS)), np.zeros(len(OCCLUSIONS))
            for start in range(0, n, config.batch):
                b = order[start:start + config.batch]
                m = torch.from_numpy(masks[b])
                x = torch.cat([torch.from_numpy(images[b]) * m, m], dim=1)
                t = torch.from_numpy(targets[b])
                u = net.forward(x, config.samples, quantize, generator)
                p = net.expectation(u).mean(dim=1).clamp(1e-6, 1 - 1e-6)
                bce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))
                weight = (1 - m) + config.known_weight * m
                loss = (bce * weight).sum() / weight.sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * float(weight.sum())
                weight_sum += float(weight.sum())
                hidden_bce = ((bce * (1 - m)).sum(dim=1) / (1 - m).sum(dim=1)).detach().numpy()
                np.add.at(kind_loss, kind_index[b], hidden_bce)
                np.add.at(kind_count, kind_index[b], 1)
            sched.step()
            history["loss"][epoch] = total / weight_sum
            history["loss_by_kind"][epoch] = kind_loss / np.maximum(kind_count, 1)
            bar.set_postfix(loss=f"{history['loss'][epoch]:.4f}",
                            phase="quantized" if quantize else "float")
        bar.close()
        model = export(net, sizes, input_bits, config.weight_bits, fmt, quantized=True)
        float_weights, float_bias = [], []
        with torch.no_grad():
            for l in range(len(sizes) - 1):
                w, b = net.layer(l, quantize=False)
                float_weights.append(w.double().numpy())
                float_bias.append(b.double().numpy())
        seconds_network = time.perf_counter() - began
        classifier = train_classifier(images.reshape(-1, *shape) / top, labels,
                                      len(dataset.classes), seed=config.seed,
                                      epochs=config.classifier_epochs)
    finally:
        torch.set_num_threads(threads)
    meta = {
        "dataset": dataset.name, "shape": list(shape), "max_value": int(top),
        "classes": list(dataset.classes), "sizes": list(sizes), "config": asdict(config),
        "calibration": None if codes is None else {
            "file": codes.source, "device_neurons": codes.device_neurons,
            "rule": "network neuron k (layer 1 first) gets calibration neuron k mod M"},
        "noise": noise_entry(net.noise),
        "train_seconds": round(seconds_network, 1),
        "train_seconds_with_classifier": round(time.perf_counter() - began, 1),
        "torch": torch.__version__,
    }
    return Trained(model, float_weights, float_bias, classifier, history, meta)


def export(net, sizes, input_bits, weight_bits, fmt=FORMAT, quantized=True):
    """The :class:`ModelImage` of a :class:`_Net`: ``W = round(w sigma)``, ``B = round(b sigma +
    theta)``, with every neuron's theta and sigma codes and the net's noise table; the same
    rounding as the quantized forward pass, so ``(W x + B - theta) / sigma`` equals its ``u``."""
    torch = _torch()
    weights, bias, theta, sigma = [], [], [], []
    with torch.no_grad():
        for l in range(len(sizes) - 1):
            t_code, s_code = net.codes_of(l)
            s = s_code / (1 << fmt.sigma_frac)
            t = t_code / (1 << fmt.theta_frac)
            # float32 products, as in the forward pass, so the rounding is the same
            w = (net.effective(l) * torch.tensor(s, dtype=torch.float32)[:, None]).numpy()
            w_int = np.clip(np.round(w), -net.w_hi - 1, net.w_hi).astype(np.int64)
            b = (net.biases[l] * torch.tensor(s, dtype=torch.float32)
                 + torch.tensor(t, dtype=torch.float32)).numpy()
            weights.append(w_int)
            bias.append(np.round(b).astype(np.int64))
            theta.append(np.asarray(t_code, np.int64))
            sigma.append(np.asarray(s_code, np.int64))
    try:
        return ModelImage(tuple(sizes), input_bits, weight_bits, fmt, tuple(weights), tuple(bias),
                          tuple(theta), tuple(sigma), noise=net.noise)
    except ModelError as error:
        raise InputError(f"the trained network does not fit the design: {error}") from None


# ---------------------------------------------------------------------------------------------
# Sampling (the float backend) and the companion file


class FloatNetwork:
    """The float model: ``weights[l]`` ``(N_l, N_(l-1))`` and ``bias[l]`` in sigma units per raw
    input, every neuron firing when ``u + z > 0`` with ``z ~ F``, the distribution of the noise
    table ``noise`` (the Gaussian by default: then ``z ~ N(0, 1)``)."""

    def __init__(self, weights, bias, noise=None):
        self.weights = [np.asarray(w, dtype=np.float64) for w in weights]
        self.bias = [np.asarray(b, dtype=np.float64) for b in bias]
        self.sizes = (self.weights[0].shape[1], *(w.shape[0] for w in self.weights))
        self.noise = gaussian() if noise is None else noise

    def counts(self, inputs, seeds, samples, chunk=64):
        """Output spin counts ``(jobs, N_L)``: job ``k`` draws its noise from
        ``numpy.random.default_rng(seeds[k])`` (see :func:`float_noise`)."""
        inputs = np.asarray(inputs, dtype=np.float64)
        out = np.zeros((len(inputs), self.sizes[-1]), dtype=np.int64)
        zeros = [np.zeros(n) for n in self.sizes[1:]]
        ones = [np.ones(n) for n in self.sizes[1:]]
        for start in range(0, len(inputs), chunk):
            part = slice(start, start + chunk)
            noise = float_noise(seeds[part], self.sizes, samples, self.noise)
            out[part] = sample_counts(self.weights, self.bias, zeros, ones, inputs[part], noise)
        return out


def float_noise(seeds, sizes, samples, table=None):
    """The float model's per-layer draws of ``z`` ``(jobs, samples, N_l)``: job ``k`` takes
    ``rng = default_rng(seeds[k])`` and, with ``shape = (samples, N_1 + ... + N_L)`` split by layer,
    ``rng.standard_normal(shape)`` for the Gaussian (``table`` None or
    :func:`~spinemu.hdl.noise_table.gaussian`), else :meth:`NoiseShape.draw` of
    ``rng.random(shape)``: draws of the table's cell distribution."""
    shape = (samples, sum(sizes[1:]))
    draw = None if table is None or table == gaussian() else NoiseShape(table).draw
    rngs = [np.random.default_rng(int(s)) for s in seeds]
    draws = np.zeros((0, *shape))
    if rngs:
        draws = np.stack([rng.standard_normal(shape) if draw is None else draw(rng.random(shape))
                          for rng in rngs])
    bounds = np.cumsum([0, *sizes[1:]])
    return [draws[:, :, bounds[l]:bounds[l + 1]] for l in range(len(sizes) - 1)]


def sample_counts(weights, bias, theta, sigma, inputs, noise):
    """Output spin counts of a network of spin neurons, given its noise.

    Neuron ``j`` of layer ``l`` fires when ``(a_j - theta_j) + sigma_j z > 0`` with ``a = W x +
    b``; ``noise[l]`` holds ``z``, ``(jobs, samples, N_l)``. Layer 1's ``a`` is computed once per
    job. With integer ``W``, ``b``, inputs, and dyadic ``theta``, ``sigma``, ``z`` (the design's
    codes) every step is exact in float64, so this is the golden model's arithmetic.
    """
    x = np.asarray(inputs, dtype=np.float64)
    a = (x @ np.asarray(weights[0], dtype=np.float64).T + bias[0])[:, None, :]
    for l in range(len(weights)):
        if l:
            a = x @ np.asarray(weights[l], dtype=np.float64).T + bias[l]
        x = ((a - theta[l]) + sigma[l] * noise[l] > 0).astype(np.float64)
    return x.sum(axis=1).astype(np.int64)


def companion_path(model_path):
    """Where the companion of ``M.bin`` is: ``M.npz`` beside it."""
    return Path(model_path).with_suffix(".npz")


def save_companion(path, trained, model_bytes):
    """Write the float model, the reference classifier, the training record and metadata (the
    noise table among them, as ``meta["noise"]``, CALIB.json's form: the float model's ``F``)."""
    meta = dict(trained.meta, format=COMPANION_FORMAT, version=COMPANION_VERSION,
                model_sha256=hashlib.sha256(model_bytes).hexdigest(),
                qat_from=int(trained.history["qat_from"]))
    arrays = {"meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)}
    for l, (w, b) in enumerate(zip(trained.float_weights, trained.float_bias, strict=True)):
        arrays[f"float_w{l}"] = np.asarray(w, dtype=np.float32)
        arrays[f"float_b{l}"] = np.asarray(b, dtype=np.float32)
    arrays.update(trained.classifier.to_arrays())
    for key in ("loss", "lr", "loss_by_kind"):
        arrays[f"history_{key}"] = np.asarray(trained.history[key], dtype=np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # np.savez would add ".npz" to any other name
        np.savez_compressed(f, **arrays)


@dataclass
class Companion:
    """What :func:`load_companion` reads: the float model, the classifier and the metadata."""

    network: FloatNetwork
    classifier: ReferenceClassifier
    meta: dict
    history: dict


def load_companion(path, model_bytes=None):
    """Read a companion file; InputError naming it and the problem. With ``model_bytes``, check that
    it was written for that model image. A companion without ``meta["noise"]`` (written before
    noise tables) has the Gaussian."""
    path = Path(path)
    try:
        with np.load(path) as f:
            arrays = dict(f)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; `spinemu train` writes it next to the model "
                         "image (the float model and the reference classifier)") from None
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not a training companion file ({error})") from None
    try:
        meta = json.loads(arrays["meta"].tobytes())
        if meta.get("format") != COMPANION_FORMAT or meta.get("version") != COMPANION_VERSION:
            raise ValueError("unknown format or version")
        layers = len(meta["sizes"]) - 1
        network = FloatNetwork([arrays[f"float_w{l}"] for l in range(layers)],
                               [arrays[f"float_b{l}"] for l in range(layers)],
                               noise_from_entry(meta.get("noise"), str(path)))
        classifier = ReferenceClassifier.from_arrays(arrays)
    except InputError:    # the noise table's own message, naming the file
        raise
    except (KeyError, ValueError, TypeError) as error:
        raise InputError(f"{path}: not a training companion file ({error})") from None
    if model_bytes is not None and hashlib.sha256(model_bytes).hexdigest() != meta["model_sha256"]:
        raise InputError(f"{path}: written for another model image (its SHA-256 differs); "
                         "train again or pass the matching model")
    history = {key[8:]: arrays[key] for key in arrays if key.startswith("history_")}
    return Companion(network, classifier, meta, history)


