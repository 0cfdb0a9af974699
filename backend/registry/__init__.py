"""Versioned trained models per project under MODEL_DIR (imports only the standard library)."""
