"""`python -m cnnkit ...` (also `torchrun --nproc_per_node N -m cnnkit train ...`)."""

import sys

from cnnkit.cli import main

sys.exit(main())
