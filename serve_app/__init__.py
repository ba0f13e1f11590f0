"""whisper-serve: speech to text on Ray Serve, speaking the go-whisper and OpenAI audio APIs."""
