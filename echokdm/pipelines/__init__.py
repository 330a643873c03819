"""Inference pipelines (no training code): K2F, F2I and KDM."""

from echokdm.pipelines.kdm import FlowToImagePipeline, KDMOutput, KDMPipeline, KeypointToFlowPipeline

__all__ = ["KeypointToFlowPipeline", "FlowToImagePipeline", "KDMPipeline", "KDMOutput"]
