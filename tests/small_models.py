"""Small networks several test files build their inputs from."""

import torch
from torch import nn


class Residual(nn.Module):
    """conv-bn-relu, then a 1x1 conv-bn whose output a residual add joins: with
    S8S8 ORT keeps that pattern in float, with U8S8 it has int8 kernels for all
    of it; OpenVINO folds each BatchNorm into its convolution."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.project = nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.project(x)
        return self.fc(torch.flatten(self.pool(x), 1))
