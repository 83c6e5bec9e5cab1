"""Torch side: model definitions, training, export to bundles, tuning of new tasks."""
