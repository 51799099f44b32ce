"""The lake: table contracts, week arithmetic, Delta I/O and engine-neutral frame helpers."""
