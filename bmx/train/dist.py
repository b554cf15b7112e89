"""Where a worker trains: its devices and, under ``--kvstore dist_sync``, the synchronous
data parallelism over MXNet's parameter server (Li et al., "Scaling Distributed Machine
Learning with the Parameter Server", OSDI 2014)."""


def _contexts(spec):
    """``(kind, ids)`` of ``--ctx`` -> the MXNet contexts."""
    import mxnet as mx
    kind, ids = spec
    return [(mx.gpu if kind == "gpu" else mx.cpu)(i) for i in ids]


def _join_workers(dist):
    """The kvstore of a ``dist_sync`` job (created here: it waits for the scheduler), this
    worker's rank and the number of workers; ``(None, 0, 1)`` for a single process."""
    if not dist:
        return None, 0, 1
    import mxnet as mx
    kv = mx.kv.create("dist_sync")
    return kv, kv.rank, kv.num_workers


def _plain(arr):
    """A copy of ``arr`` in MXNet's default (row-major) layout."""
    import mxnet as mx
    return mx.nd.array(arr.asnumpy(), ctx=arr.context, dtype=arr.dtype)


class _DistSync:
    """Synchronous data parallelism over MXNet's ``dist_sync`` parameter server.

    One kvstore key per parameter. Without an optimizer on the servers, a ``dist_sync``
    server stores the sum of one push per worker, so push + pull is an all-reduce.
    Construction copies rank 0's parameters to every worker. MXNet's ``Init`` passes its
    barrier before the rank-0 push is acknowledged (so another worker's pull can reach the
    server first: "init K first"): every phase here ends with ``waitall`` and a barrier.
    """

    def __init__(self, kv, net, ctx):
        import mxnet as mx
        self.mx, self.kv, self.ctx = mx, kv, ctx
        self.n = kv.num_workers
        self.params = list(net.collect_params().values())
        self.grad_keys = [i for i, p in enumerate(self.params) if p.grad_req != "null"]
        self.aux_keys = [i for i, p in enumerate(self.params) if p.grad_req == "null"]
        mx.nd.waitall()
        keys = list(range(len(self.params)))
        # Plain copies: after a forward pass oneDNN may hold conv weights in its own
        # layout, and MXNet's dist push silently skips such arrays.
        kv.init(keys, [_plain(p.data(ctx)) for p in self.params])
        self._fence()
        for i in keys:
            buf = mx.nd.zeros(self.params[i].shape, ctx=ctx, dtype=self.params[i].dtype)
            kv.pull(i, out=buf)
            self.params[i].set_data(buf)
        self._fence()

    def _fence(self):
        self.mx.nd.waitall()
        self.kv._barrier()

    def allreduce_grads(self):
        for i in self.grad_keys:
            g = self.params[i].grad(self.ctx)
            self.kv.push(i, _plain(g), priority=-i)
            self.kv.pull(i, out=g, priority=-i)

    def average_aux(self):
        """Average the BatchNorm running statistics over the workers."""
        for i in self.aux_keys:
            a = self.params[i].data(self.ctx)
            self.kv.push(i, _plain(a), priority=-i)
            self.kv.pull(i, out=a, priority=-i)
        self.mx.nd.waitall()
        for i in self.aux_keys:
            a = self.params[i].data(self.ctx)
            a /= self.n
        self._fence()
