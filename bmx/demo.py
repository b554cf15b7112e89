"""Main job placeholder until bmx.train lands: a short Gluon BNN forward/backward."""
import mxnet as mx
from mxnet.gluon import nn

import bmx


def main():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(16, 3, padding=1, use_bias=False), nn.BatchNorm(),
            bmx.nn.BinaryConvolution(16, kernel_size=3, padding=1), nn.BatchNorm(),
            nn.Activation("relu"), nn.GlobalAvgPool2D(), nn.Dense(10))
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    net.hybridize()
    x = mx.nd.random.normal(shape=(4, 1, 8, 8))
    with mx.autograd.record():
        loss = net(x).sum()
    loss.backward()
    print("bmx", bmx.__version__, "engine", bmx.engine.__version__, "output", net(x).shape)


if __name__ == "__main__":
    main()
