"""Core types shared by every layer. Imports nothing else from `backend`."""
