"""The serving core: model repository, registry, batcher and ONNX Runtime sessions. It knows
nothing of HTTP: it raises the domain errors of app.errors."""
