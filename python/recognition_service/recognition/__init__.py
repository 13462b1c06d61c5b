"""Faces: decode, detect, align, embed, match; the engine and the gallery. No Flask."""
