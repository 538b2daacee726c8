"""An exported ONNX generator as a module: evaluate() scores it under the same protocol as any generator.

``OnnxGenerator("student-int8.onnx")(z)`` runs the file in onnxruntime (CPU) and returns what a generator
returns: float images [N, C, H, W] in [-1, 1] (a ``--uint8`` export's pixels are mapped back exactly, so
``data.to_uint8`` gives the same pixels). Family, config and lineage come from the metadata gandistill writes into
its exports; params and MACs are those of the architecture the config describes (what was exported, whatever
the precision it is stored in).
"""
from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from .profile import count_macs, count_params


def is_onnx_path(model) -> bool:
    return isinstance(model, (str, os.PathLike)) and str(model).endswith(".onnx")


class OnnxGenerator(nn.Module):
    """A gandistill ONNX export served by onnxruntime on the CPU; no parameters, no gradients."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        super().__init__()
        from .export import read_metadata
        from .onnx_runtime import architecture, check_onnx_file, onnx_session

        check_onnx_file(path)  # before anything reads it: a TorchScript archive is refused by its content
        meta = read_metadata(path)  # one clear line for a missing, corrupt or foreign file
        skeleton = architecture(path, meta)  # on the meta device, checked against the graph
        self.session = onnx_session(path, threads)
        z_input, img_output = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name = z_input.name
        # z_dim from the graph's input shape when it is fixed, else from the metadata
        self.z_dim = z_input.shape[1] if isinstance(z_input.shape[1], int) else int(meta["z_dim"])
        self.family, self.config = skeleton.family, skeleton.config
        if self.config.z_dim != self.z_dim:
            raise ValueError(f"{path}: input z has {self.z_dim} dimensions, its metadata says {self.config.z_dim}")
        self.lineage = meta.get("lineage")
        self.quantize = meta.get("quantize")
        self.uint8 = img_output.type == "tensor(uint8)"  # [N, H, W, C] pixels
        self.source = str(path)
        self.num_params, self.macs = count_params(skeleton), count_macs(skeleton)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [N, {self.z_dim}], got {list(z.shape)}"
        out = self.session.run(None, {self.input_name: z.detach().cpu().float().numpy()})[0]
        img = torch.from_numpy(np.ascontiguousarray(out))
        if self.uint8:  # q -> q / 127.5 - 1, which to_uint8 rounds back to q
            img = img.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        return img.to(z.device)  # [N, C, H, W] in [-1, 1]

    def extra_repr(self) -> str:
        return f"{self.source}, {self.family}, width {self.config.width:g}, {self.quantize or 'float'}"


def params_and_macs(generator: nn.Module) -> tuple[int, int]:
    """count_params and count_macs, or an OnnxGenerator's (counted on the architecture its config describes)."""
    if isinstance(generator, OnnxGenerator):
        return generator.num_params, generator.macs
    return count_params(generator), count_macs(generator)


def device_of(generator: nn.Module) -> torch.device:
    """Where a generator's weights live (CPU for an OnnxGenerator, which has none in torch)."""
    return next(generator.parameters(), torch.empty(0)).device


__all__ = ["OnnxGenerator", "device_of", "is_onnx_path", "params_and_macs"]
