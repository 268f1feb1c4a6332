"""Matching and the training criterion."""

from rtdetr.loss.criterion import RTDETRCriterion
from rtdetr.loss.matcher import HungarianMatcher

__all__ = ["HungarianMatcher", "RTDETRCriterion"]
