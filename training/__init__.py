"""The lab: real data sets and their manifests, labelling helpers. Never imported by the runtime."""
