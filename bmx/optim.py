"""Optimizers bmx registers with MXNet (imported by ``bmx-train``).

MXNet 1.9 has no RAdam; the BinaryDenseNet/MeliusNet recipes use it (spec section 6).
"""
import math

import mxnet as mx

__all__ = ["RAdam"]


@mx.optimizer.register
class RAdam(mx.optimizer.Optimizer):
    """Rectified Adam (Liu et al., "On the Variance of the Adaptive Learning Rate and
    Beyond", 2020): Adam whose adaptive step is switched on, and rectified, only once
    the variance estimate is reliable (rho_t > 4); before that, SGD with momentum.
    Registered as ``'radam'`` (MXNet 1.9 has none). Weight decay is added to the gradient.
    """

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def create_state(self, index, weight):
        return (mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype),
                mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype))

    def update(self, index, weight, grad, state):
        nd = mx.nd
        self._update_count(index)
        lr, wd = self._get_lr(index), self._get_wd(index)
        t = self._index_update_count[index]
        g = grad * self.rescale_grad
        if self.clip_gradient is not None:
            g = nd.clip(g, -self.clip_gradient, self.clip_gradient)
        if wd:
            g = g + wd * weight
        mean, var = state
        mean[:] = self.beta1 * mean + (1 - self.beta1) * g
        var[:] = self.beta2 * var + (1 - self.beta2) * nd.square(g)
        b1t, b2t = self.beta1 ** t, self.beta2 ** t
        rho_inf = 2.0 / (1 - self.beta2) - 1
        rho_t = rho_inf - 2.0 * t * b2t / (1 - b2t)
        m_hat = mean / (1 - b1t)
        if rho_t > 4:
            r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                          / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            weight[:] = weight - lr * r * m_hat * math.sqrt(1 - b2t) / (nd.sqrt(var)
                                                                        + self.epsilon)
        else:
            weight[:] = weight - lr * m_hat
