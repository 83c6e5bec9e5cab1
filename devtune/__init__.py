"""The `devtune` command line: train, serve, predict, demo, tune, bench."""
