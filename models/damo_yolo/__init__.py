"""Placeholder until the family lands."""

VARIANTS: dict = {}
