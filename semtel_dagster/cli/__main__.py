import sys

from semtel_dagster.cli import main

sys.exit(main())
