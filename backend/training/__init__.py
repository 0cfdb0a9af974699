"""Training from reviewer-corrected Label Studio annotations (runs outside requests)."""
