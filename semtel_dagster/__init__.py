"""semtel: LLM classifiers over weekly conversation logs, as a Dagster project over Delta tables."""

import warnings

# The weekly backfill policy is chosen on purpose (see partitions.py); Dagster flags the parameter as beta.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=Warning)
