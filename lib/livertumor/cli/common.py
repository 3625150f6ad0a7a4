"""What several subcommands share: the NIfTI output check and the options made from a
settings dataclass."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import LiverTumorError


def nifti_output(path: Path) -> None:
    if not path.name.endswith((".nii", ".nii.gz")):
        raise LiverTumorError("output must end in .nii or .nii.gz", path)

def add_dataclass_options(parser: argparse.ArgumentParser, cls) -> None:
    """One option per field of a settings dataclass: ``--name-with-dashes``.

    Type and default come from the field, the help text from ``metadata["doc"]``, choices and
    metavar from ``metadata["choices"]`` and ``metadata["metavar"]``; a bool field becomes a
    ``--name`` / ``--no-name`` pair. The option's dest is the field name, so
    ``cls.from_dict(vars(args))`` builds the settings.
    """
    import dataclasses
    import typing

    types = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        meta = {"help": f.metadata.get("doc", "").replace("%", "%%"), "default": f.default}
        if types[f.name] is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **meta)
            continue
        for key in ("choices", "metavar"):
            if f.metadata.get(key) is not None:
                meta[key] = f.metadata[key]
        parser.add_argument(flag, type=types[f.name], **meta)
