"""`python -m harness.bench …` is `harness-bench …`."""
from harness.bench import main

main()
