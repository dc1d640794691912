"""`python -m receiver` is the `dtpush` command."""

import sys

from receiver.cli import main

sys.exit(main())
