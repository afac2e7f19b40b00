"""`python -m emo_hf ...` is `emo-hf ...`."""

import sys

from .cli import main

sys.exit(main())
