"""The seeding function: from a job's 64-bit seed to the state of every noise block's LFSR.

``seed_state(seed, j) = fmix64((seed + (j + 1) * 0x9E3779B97F4A7C15) mod 2^64)``, where ``fmix64`` is
MurmurHash3's 64-bit finaliser (a bijection with full avalanche). This is the SplitMix64 construction:
block ``j`` takes the ``j+1``-th element of the Weyl sequence started at ``seed``, mixed. Because
fmix64 is a bijection, exactly one input maps to the all-zero state that would lock an LFSR; that
input is given the state ``0x9E3779B97F4A7C15`` instead.

Results therefore depend only on the job's seed, never on what ran before. The function needs only
adds, shifts, XORs and two constant multiplications, so gateware can compute it with a sequential
shift-and-add multiplier when a job starts.
"""

from numbers import Integral

import numpy as np

__all__ = ["SEED_BITS", "DIGIT_BITS", "seed_state", "seed_states", "seed_array", "fmix64",
           "block_cycles", "seeding_cycles"]

SEED_BITS = 64
#: The bits of fmix64's constants a gateware seeder may multiply by a cycle.
DIGIT_BITS = (1, 2, 4, 8)
_MASK = (1 << 64) - 1
_WEYL = 0x9E3779B97F4A7C15


def fmix64(x):
    """MurmurHash3's 64-bit finaliser, of an integer or elementwise of a uint64 array (whose
    arithmetic is already mod 2^64)."""
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _MASK
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _MASK
    x ^= x >> 33
    return x


def seed_state(seed, block):
    """The 64-bit LFSR state of noise block ``block`` (0, 1, ...) for job seed ``seed``; never 0."""
    return int(seed_states([seed], block)[0])


def seed_array(seeds):
    """``seeds`` (integers, or an integer array) as a uint64 array; ValueError for one that is not
    an integer 0..2^64-1."""
    if isinstance(seeds, np.ndarray) and seeds.dtype.kind in "iu":
        if seeds.dtype.kind == "i" and seeds.size and seeds.min() < 0:
            raise ValueError(f"seed must be an integer 0..2^64-1, not {seeds.min()}")
        return seeds.astype(np.uint64)
    bad = [s for s in seeds if not isinstance(s, Integral) or not 0 <= s <= _MASK]
    if bad:
        raise ValueError(f"seed must be an integer 0..2^64-1, not {bad[0]!r}")
    return np.array([int(s) for s in seeds], dtype=np.uint64)


def seed_states(seeds, block):
    """:func:`seed_state` of each of ``seeds`` (as :func:`seed_array` takes them) for ``block``, at
    once: a uint64 array. The one definition of the formula (see the module)."""
    if not isinstance(block, int) or block < 0:
        raise ValueError(f"noise block index must be a non-negative integer, not {block!r}")
    seeds = seed_array(seeds)
    states = fmix64(seeds + np.uint64((block + 1) * _WEYL & _MASK))
    states[states == 0] = _WEYL
    return states


def block_cycles(digit_bits):
    """Cycles the gateware seeder (:class:`~spinemu.hdl.seeder.Seeder`) multiplying ``digit_bits``
    bits a cycle takes per block, its state taken at once: a fold and ``64 / digit_bits`` cycles
    for each multiplication, the last fold, a cycle to offer the state."""
    return 2 * (64 // digit_bits + 1) + 2


def seeding_cycles(blocks, digit_bits):
    """Cycles from the seeder taking a job's seed to its last of ``blocks`` states taken, that
    cycle included, its states taken at once: the seed, block 0's Weyl value, then
    :func:`block_cycles` per block."""
    return 2 + blocks * block_cycles(digit_bits)
