"""The training losses: softmax cross-entropy against soft targets (one-hot, label
smoothing, mixup) and knowledge distillation from a float teacher (Hinton et al.,
"Distilling the Knowledge in a Neural Network", 2015), and the teacher itself."""
from .._cli import UsageError
from .._cli import first_line as _first_line
from .model import build_model, parse_model_spec


def soft_ce(logits, target):
    """Cross-entropy of ``softmax(logits)`` against the distributions ``target``, per row."""
    from mxnet import nd
    return -(nd.log_softmax(logits, axis=-1) * target).sum(axis=-1)


def teacher_targets(teacher, x, temperature):
    """The teacher's softened class distributions ``softmax(teacher(x) / T)``."""
    from mxnet import nd
    return nd.softmax(teacher(x) / temperature, axis=-1)


def training_loss(logits, target, soft, alpha, temperature):
    """:func:`soft_ce` against ``target``; with teacher distributions ``soft`` (else None),
    ``(1 - alpha)`` times that plus ``alpha`` times the cross-entropy of
    ``softmax(logits / T)`` against ``soft``, scaled by ``T**2`` so that its gradients keep
    their size across temperatures."""
    loss = soft_ce(logits, target)
    if soft is not None:
        T = temperature
        loss = (1 - alpha) * loss + alpha * soft_ce(logits / T, soft) * (T * T)
    return loss


def build_teacher(spec, params, classes, image_shape, stem=None, ctxs=None):
    """A float teacher: exported ``*-symbol.json``, a bmx zoo / flex spec (built with
    32-bit layers), or a :mod:`mxnet.gluon.model_zoo.vision` name."""
    import mxnet as mx
    from mxnet import gluon
    ctxs = ctxs or [mx.cpu()]
    if spec.endswith("-symbol.json"):
        with _quiet_warnings():  # SymbolBlock warns about its input name
            net = gluon.SymbolBlock.imports(spec, ["data"], params, ctx=ctxs)
    else:
        name, kwargs = parse_model_spec(spec)
        try:
            net = build_model(spec, classes, stem=stem, binary=False)
        except UsageError:
            try:
                net = gluon.model_zoo.vision.get_model(name, classes=classes, **kwargs)
            except (ValueError, TypeError) as e:
                raise UsageError(f"unknown teacher {spec!r}: not a bmx zoo model, not a gluon "
                                 f"model_zoo.vision model, not a -symbol.json ({e})") from None
        try:
            net.load_parameters(params, ctx=ctxs)
        except (AssertionError, mx.base.MXNetError, ValueError) as e:
            raise UsageError(f"--teacher-params {params} does not fit {spec!r}: "
                             f"{_first_line(e)}") from None
    net.hybridize(static_alloc=True)
    try:
        out = net(mx.nd.zeros((1,) + tuple(image_shape), ctx=ctxs[0]))
    except mx.base.MXNetError as e:
        raise UsageError(f"teacher {spec!r} cannot run on {image_shape} inputs: "
                         f"{_first_line(e)}") from None
    if out.shape[-1] != classes:
        raise UsageError(f"teacher {spec!r} has {out.shape[-1]} outputs, the data has "
                         f"{classes} classes")
    for p in net.collect_params().values():
        p.grad_req = "null"
    return net


class _quiet_warnings:
    def __enter__(self):
        import warnings
        self._c = warnings.catch_warnings()
        self._c.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._c.__exit__(*exc)
