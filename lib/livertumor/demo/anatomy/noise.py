"""Smooth random fields: shape displacements and tissue textures, as sums of plane waves.

Their parameters are drawn once from a random generator; evaluating them needs no generator,
so a field looks the same whatever grid samples it.
"""

from __future__ import annotations

import numpy as np

from .canvas import F32


def wave_noise(rng, n, wavelength, amp):
    """Random smooth 3-D displacement: list of (k vector (3,), phase, amplitude vector (3,))."""
    modes = []
    for _ in range(n):
        k = rng.normal(size=3)
        k *= 2 * np.pi / (np.linalg.norm(k) * rng.uniform(*wavelength))
        a = rng.normal(size=3)
        a *= rng.uniform(*amp) / np.linalg.norm(a)
        modes.append((k, rng.uniform(0, 2 * np.pi), a))
    return modes


def displace(X, Y, Z, modes):
    """Apply a :func:`wave_noise` displacement to coordinates."""
    Xd, Yd, Zd = X, Y, Z
    for k, ph, a in modes:
        s = np.sin(F32(k[0]) * X + F32(k[1]) * Y + F32(k[2]) * Z + F32(ph))
        Xd = Xd + F32(a[0]) * s
        Yd = Yd + F32(a[1]) * s
        Zd = Zd + F32(a[2]) * s
    return Xd, Yd, Zd


def wave_dirs(rng, n, wavelength):
    """``n`` random plane waves ``(k vector (3,), phase)`` with wavelengths in the range (mm)."""
    out = []
    for _ in range(n):
        k = rng.normal(size=3)
        k *= 2 * np.pi / (np.linalg.norm(k) * rng.uniform(*wavelength))
        out.append((k.astype(F32), F32(rng.uniform(0, 2 * np.pi))))
    return out


def qnoise(X, Y, Z, dirs):
    """Quasi-random smooth field, standard deviation about 1, from :func:`wave_dirs`."""
    acc = None
    for k, ph in dirs:
        t = np.sin(k[0] * X + k[1] * Y + k[2] * Z + ph)
        acc = t if acc is None else acc + t
    return acc * F32(np.sqrt(2.0 / len(dirs)))


def mottle(X, Y, Z, scale, phase):
    """Cheap separable mottle in [-1, 1] (broadcast product of sines), ``scale`` in mm."""
    return (np.sin(F32(1.0 / scale) * X + F32(phase[0]))
            * np.sin(F32(1.3 / scale) * Y + F32(phase[1]))
            * np.sin(F32(0.9 / scale) * Z + F32(phase[2])))
