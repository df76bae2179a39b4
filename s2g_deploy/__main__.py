"""``python -m s2g_deploy`` is ``s2g`` (handy under ``torchrun -m s2g_deploy train ...``)."""

from s2g_deploy.cli.app import run

run()
