"""The Training Lab's family: settings, models, recorder, trainer, result, sweep, doctor, presets, comparison, export and charts."""
