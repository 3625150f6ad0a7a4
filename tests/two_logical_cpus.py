"""Kernel startup file (``PYTHONSTARTUP``, which IPython kernels run before the first cell) of
``tests/test_full_profile.py``: TensorFlow splits the CPU into two logical devices, as a host
with two GPUs offers two, so that ``strategy: mirrored`` trains on two replicas.

The split can only be made before TensorFlow runs anything; it is made right after
``tensorflow`` is first imported, so a kernel that never imports it pays nothing.
"""

import importlib.abc
import importlib.util
import sys


class _SplitCpuAfterImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once, as the normal finders do, and splits the CPU into
    ``devices`` logical devices when its module has been executed."""

    def __init__(self, devices: int):
        self.devices = devices

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            cpu = module.config.list_physical_devices("CPU")[0]
            module.config.set_logical_device_configuration(
                cpu, [module.config.LogicalDeviceConfiguration()] * self.devices)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _SplitCpuAfterImport(2))
del _SplitCpuAfterImport
