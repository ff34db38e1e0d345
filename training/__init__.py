"""The lab: rendered training data, real data sets and their manifests, labelling helpers,
training runs and evaluation. Never imported by the runtime; the CLI reaches it."""
