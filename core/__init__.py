"""Saturation Lab's engine: train small real networks and record per-layer diagnostics.

Pure Python over PyTorch; never imports Streamlit. Use it from the CLI (`python -m core --help`),
from tests or from a notebook.
"""
