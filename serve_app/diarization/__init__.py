"""Who spoke when: the pyannote pipeline, its checkpoints, speakers onto words."""
