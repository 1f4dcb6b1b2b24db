"""HTTP service and web page for a trained model: ``create_app`` in :mod:`vaedx.serve.app`.

Kept free of imports so ``import vaedx.serve`` never needs the optional ``serve`` extra (fastapi, uvicorn).
"""
