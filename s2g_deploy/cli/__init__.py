"""The ``s2g`` command line: thin typer commands over :mod:`s2g_deploy.api`."""
