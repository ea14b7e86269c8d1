"""RoPE's context-extension schemes: how each rescales the inverse frequencies (imported only
when building).

- ``linear`` (position interpolation, Chen et al. 2023): every frequency divided by ``factor``.
- ``llama3`` (Llama 3.1): wavelengths longer than original_context / low_freq_factor are
  divided by ``factor``, those shorter than original_context / high_freq_factor kept, and those
  between interpolated smoothly.
- ``yarn`` (Peng et al. 2023): frequencies that turn fewer than ``beta_slow`` times over the
  original context are interpolated (divided by ``factor``), those turning more than
  ``beta_fast`` times kept, a linear ramp over the dimensions between; the attention factor
  (applied by the caller to cos and sin) compensates the scores' entropy.

Each takes the unscaled inverse frequencies of a rotated size ``hs`` (theta^(-2j/hs)).
"""

import math

import torch


def scaled(inv_freq, hs, theta, scaling, factor, original_context, low_freq_factor,
           high_freq_factor, beta_fast, beta_slow, truncate):
    """``inv_freq`` (hs/2,) rescaled by ``scaling`` (none, linear, llama3, yarn)."""
    if scaling == "linear":
        return inv_freq / factor
    if scaling == "llama3":
        return _llama3(inv_freq, factor, original_context, low_freq_factor, high_freq_factor)
    if scaling == "yarn":
        return _yarn(inv_freq, hs, theta, factor, original_context, beta_fast, beta_slow,
                     truncate)
    return inv_freq


def _llama3(inv_freq, factor, original, low_freq_factor, high_freq_factor):
    wavelength = 2 * math.pi / inv_freq
    long_waves = original / low_freq_factor  # longer than this: interpolate fully
    short_waves = original / high_freq_factor  # shorter than this: keep
    scaled = torch.where(wavelength > long_waves, inv_freq / factor, inv_freq)
    smooth = (original / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)
    between = (wavelength >= short_waves) & (wavelength <= long_waves)
    return torch.where(between, (1 - smooth) * inv_freq / factor + smooth * inv_freq, scaled)


def _yarn(inv_freq, hs, theta, factor, original, beta_fast, beta_slow, truncate):
    def dimension(rotations):  # the dimension that turns ``rotations`` times over the context
        return hs * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = dimension(beta_fast), dimension(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, hs - 1)
    if low == high:
        high += 0.001  # no division by zero
    ramp = ((torch.arange(hs // 2, dtype=torch.float32, device=inv_freq.device) - low)
            / (high - low)).clamp(0, 1)  # 0: keep (extrapolate), 1: interpolate
    return inv_freq / factor * ramp + inv_freq * (1 - ramp)
