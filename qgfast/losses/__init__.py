"""Segmentation losses (MONAI-compatible names): Dice, DiceCE, quality-weighted losses."""
