"""`python -m core …`: see core/tools/cli.py."""

import sys

from core.cpus import size_openmp_to_container

size_openmp_to_container()  # before anything imports torch: its thread pool is sized once

from core.tools.cli import main  # noqa: E402

sys.exit(main())
