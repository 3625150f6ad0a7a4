"""Synthetic LiTS-like CT cases: the generator (:mod:`.generator`), the anatomy it draws
(:mod:`.anatomy`) and deliberately broken files for the bad-input paths (:mod:`.faults`)."""

from .faults import write_broken_examples
from .generator import DemoCase, make_case, make_demo_dataset

__all__ = ["DemoCase", "make_case", "make_demo_dataset", "write_broken_examples"]
