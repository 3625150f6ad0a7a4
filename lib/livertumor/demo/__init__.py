"""Synthetic LiTS-like CT cases: the generator (:mod:`.generator`), the case geometry
(:mod:`.geometry`), the anatomy it draws in one of four contrast phases (:mod:`.anatomy`),
the scanner's blur and noise (:mod:`.scanner`) and deliberately broken files for the
bad-input paths (:mod:`.faults`)."""

from .faults import write_broken_examples
from .generator import DemoCase, make_case, make_demo_dataset

__all__ = ["DemoCase", "make_case", "make_demo_dataset", "write_broken_examples"]
