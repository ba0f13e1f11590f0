"""The Ray Serve deployments of whisper-serve, one file each; `deployments.app` binds them."""
