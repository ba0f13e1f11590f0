"""The Ray Serve deployments of whisper-serve, one file each; `serve_app.app` binds them."""
