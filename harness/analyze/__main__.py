"""`python -m harness.analyze`: the same as harness-analyze."""
import sys

from harness.analyze import main

sys.exit(main())
