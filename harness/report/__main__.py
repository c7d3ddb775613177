"""`python -m harness.report`: the same as harness-report."""
import sys

from harness.report import main

sys.exit(main())
