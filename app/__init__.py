"""Small model server. Kept free of imports: training imports `app.card` and `app.tokenizer`
without pulling in FastAPI or ONNX Runtime."""
