"""Parameter overrides of a run: ``run --set KEY=VALUE``, on top of a profile's parameters.

``KEY`` is a notebook parameter (``image_size``): it replaces that parameter in every notebook
of the profile that declares it. ``NAME.KEY`` (``04_training_unet.epochs``) replaces it in one
notebook entry only, named as in the profile (its ``name``, or its notebook stem for every run
of that notebook). A scoped override wins over an unscoped one of the same key. Values are
YAML scalars or lists, as in the profile files: ``64``, ``0.5``, ``1e-4``, ``true``,
``unet``, ``[liver, abdomen_soft]``.

The parameters the runner sets itself (the data, the run and export folders, the seed, the new
study) have their own options and cannot be overridden.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

import yaml

from ..errors import LiverTumorError

RUNNER_KEYS = {
    "data_dir": "--data-dir", "export_dir": "--export-dir", "output_dir": "--run / --outputs-dir",
    "seed": "--seed", "study_path": "--study", "generate_demo": "--data-dir",
}
"""Parameters the runner gives every notebook, and the option that sets each instead."""

_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
"""A float in exponent notation without a dot (``1e-4``), which YAML 1.1 reads as a string."""


def parse_value(text: str):
    """A ``--set`` value as YAML reads it (int, float, bool, None, string or list), with
    ``1e-4`` read as a float.

    Raises
    ------
    LiverTumorError
        Text that is not valid YAML (an unclosed list, for example).

    Examples
    --------
    >>> parse_value("64"), parse_value("1e-4"), parse_value("false"), parse_value("unet")
    (64, 0.0001, False, 'unet')
    >>> parse_value("[liver, abdomen_soft]")
    ['liver', 'abdomen_soft']
    """
    if _EXPONENT_FLOAT.fullmatch(text.strip()):
        return float(text)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise LiverTumorError(f"{text!r} is not a YAML value ({err.problem})") from None


def parse_assignment(text: str) -> tuple[str, object]:
    """``"KEY=VALUE"`` (or ``"NAME.KEY=VALUE"``) as ``(key, value)``, the value parsed by
    :func:`parse_value`.

    Raises
    ------
    LiverTumorError
        No ``=``, or a key whose parameter part is not a Python name.
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not split_key(key)[1].isidentifier():
        raise LiverTumorError(f"{text!r} is not KEY=VALUE or NAME.KEY=VALUE with a parameter "
                              "name as KEY")
    return key, parse_value(value)


def split_key(key: str) -> tuple[str | None, str]:
    """``"04_training_unet.epochs"`` -> ``("04_training_unet", "epochs")``;
    ``"epochs"`` -> ``(None, "epochs")``."""
    scope, _, name = key.rpartition(".")
    return scope or None, name


def _matches(entry: dict, scope: str | None) -> bool:
    """Whether an override scoped to ``scope`` (None: every notebook) applies to ``entry``."""
    return scope is None or scope in (entry["name"], entry["notebook"])


def _unknown(key: str, name: str, known: set[str], where: str) -> str:
    """The message for a parameter ``name`` that no notebook in scope declares (``where``:
    "no notebook of ... declares it"), with the closest declared names as a hint."""
    close = difflib.get_close_matches(name, sorted(known), n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"override {key}: unknown parameter {name!r} ({where}){hint}"


def check_overrides(overrides: Mapping[str, object], entries: list[dict],
                    declared: Mapping[str, set], profile: str) -> None:
    """Refuse overrides that would change nothing or that the runner sets itself.

    Parameters
    ----------
    overrides : ``{key or "name.key": value}``
    entries : the profile's notebook entries (``{notebook, name, parameters}``)
    declared : the parameters each entry's notebook declares, by entry name
    profile : the profile's name, for the messages

    Raises
    ------
    LiverTumorError
        A key that is a runner parameter (the message names its option), a scope that names
        no notebook of the profile, or a parameter that no notebook in scope declares. The
        message names the key.
    """
    for key in overrides:
        scope, name = split_key(key)
        if name in RUNNER_KEYS:
            raise LiverTumorError(f"override {key}: {name} is set by the runner; use "
                                  f"{RUNNER_KEYS[name]} instead")
        in_scope = [e for e in entries if _matches(e, scope)]
        if not in_scope:
            names = ", ".join(e["name"] for e in entries)
            raise LiverTumorError(f"override {key}: {scope!r} is not a notebook of profile "
                                  f"{profile!r} ({names})")
        known = set().union(*(declared[e["name"]] for e in in_scope))
        if name not in known:
            where = (f"notebook {scope} does not declare it" if scope
                     else f"no notebook of profile {profile!r} declares it")
            raise LiverTumorError(_unknown(key, name, known, where))


def overrides_for(entry: dict, overrides: Mapping[str, object], declared: set) -> dict:
    """The overridden parameters of one notebook entry: unscoped overrides of the parameters
    its notebook declares, then the overrides scoped to it (which win)."""
    unscoped, scoped = {}, {}
    for key, value in overrides.items():
        scope, name = split_key(key)
        if name not in declared or not _matches(entry, scope):
            continue
        (unscoped if scope is None else scoped)[name] = value
    return {**unscoped, **scoped}
