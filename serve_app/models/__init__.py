"""The models on disk: the catalogue, hub ids and downloads, the embedded pack."""
