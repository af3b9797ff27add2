"""``python -m jxc``: the same as the ``jxc`` command, for subprocesses and tests."""

from jxc.cli import main

main()
