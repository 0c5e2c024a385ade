#!/usr/bin/env python3
"""Counts a TorchScript backbone's FLOPs per 224 x 224 image with PyTorch's profiler
(with_flops: convolutions and matrix products, 2 per multiply-add) and prints JSON for
bench/backbone_flops.json. Usage: /usr/bin/python3 bench/backbone_flops.py ../shared/backbones/*.pt"""
import json, os, sys

import torch
from torch.profiler import ProfilerActivity, profile

counts = {}
for path in sys.argv[1:]:
    module = torch.jit.load(path).eval()
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        module(x)
        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            module(x)
    counts[os.path.basename(path)[:-3]] = {"224": sum(e.flops for e in prof.key_averages() if e.flops) / 1e9}
print(json.dumps(counts, indent=1))
