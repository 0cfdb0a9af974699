"""Versioned trained models per project under MODEL_DIR, and the kinds of trained models (imports only core)."""
