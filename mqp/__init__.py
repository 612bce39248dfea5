"""The library behind the DVC stages in stages/: params, data, models, training, metrics."""
