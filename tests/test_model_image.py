"""The model image: byte round trip, and clear refusals of damaged or inconsistent images."""

import numpy as np
import pytest

from spinemu.hdl.model_image import ModelError, ModelImage, random_model


def test_round_trip_is_exact():
    model = random_model((12, 10, 7, 5), seed=4)
    again = ModelImage.from_bytes(model.to_bytes())
    assert again.sizes == model.sizes and again.fmt == model.fmt
    for a, b in zip(model.weights + model.bias + model.theta + model.sigma,
                    again.weights + again.bias + again.theta + again.sigma, strict=True):
        np.testing.assert_array_equal(a, b)
    assert again.to_bytes() == model.to_bytes()


def test_damage_is_detected():
    data = bytearray(random_model((4, 3), seed=0).to_bytes())
    with pytest.raises(ModelError, match="m.bin: not a spinemu model image"):
        ModelImage.from_bytes(b"JUNK" + data[4:], source="m.bin")
    data[20] ^= 1
    with pytest.raises(ModelError, match="m.bin: CRC mismatch"):
        ModelImage.from_bytes(bytes(data), source="m.bin")
    with pytest.raises(ModelError, match="CRC mismatch"):
        ModelImage.from_bytes(bytes(data[:-10]), source="m.bin")


def test_inconsistent_models_are_refused():
    model = random_model((4, 3), seed=0)
    fields = dict(sizes=model.sizes, input_bits=5, weight_bits=8, fmt=model.fmt,
                  weights=model.weights, bias=model.bias, theta=model.theta, sigma=model.sigma)
    with pytest.raises(ModelError, match="layer 1 weights: shape"):
        ModelImage(**{**fields, "weights": (np.zeros((3, 5), int),)})
    with pytest.raises(ModelError, match=r"layer 1 weights \(4-bit\): value"):
        ModelImage(**{**fields, "weight_bits": 4})
    with pytest.raises(ModelError, match="layer 1 sigma: value 0"):
        ModelImage(**{**fields, "sigma": (np.zeros(3, int),)})
    big = np.full((3, 4), 127)
    with pytest.raises(ModelError, match="overflows the 14-bit pre-activation"):
        ModelImage(**{**fields, "weights": (big,), "fmt": type(model.fmt)(a_width=14),
                      "theta": (np.zeros(3, int),), "bias": (np.zeros(3, int),)})
