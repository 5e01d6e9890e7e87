"""Split, train, evaluate: making splits, fitting the models on contract frames, metrics, the popularity and
bias baselines, and the promotion policy (which metric, which floor). Imports core, sources and stores."""
