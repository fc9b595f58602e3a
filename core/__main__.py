"""`python -m core …`: see core/cli.py."""

import sys

from core.cpus import size_openmp_to_container

size_openmp_to_container()  # before anything imports torch: its thread pool is sized once

from core.cli import main  # noqa: E402

sys.exit(main())
