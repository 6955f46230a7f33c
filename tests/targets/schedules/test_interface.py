"""Every target family's schedules provide what the frontend calls (``KernelSchedules``)."""

import pytest

from mptc.targets.schedules import KernelSchedules, kernel_schedules
from mptc.targets.target import TARGETS, resolve_target


@pytest.mark.parametrize("target", TARGETS)
def test_every_family_provides_the_kernel_schedules(target):
    assert isinstance(kernel_schedules(resolve_target(target)), KernelSchedules)
