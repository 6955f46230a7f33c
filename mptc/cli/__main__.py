"""``python -m mptc.cli``: the ``mptc`` command for launchers that start a module
(``torchrun --nproc-per-node N -m mptc.cli train ...``)."""

from mptc.cli import main

main(prog_name="mptc")
