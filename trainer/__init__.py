"""Turns a labelled face dataset into a versioned emotion-classifier SavedModel."""
