"""The command line (`python -m core`) and the benchmark."""
