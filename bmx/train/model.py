"""The networks ``bmx-train`` trains: model specs checked and built with the binary layer
configuration of the command line (bits, gradient-cancelling threshold, scaling)."""
from .._cli import UsageError
from .._cli import first_line as _first_line


def parse_model_spec(spec):
    """``'name'`` or ``'name:key=value,...'`` -> (name, kwargs) (values: Python literals);
    :func:`bmx.model_zoo.parse_model_spec` with bad specs as :class:`UsageError`."""
    from ..model_zoo.spec import parse_model_spec as parse
    try:
        return parse(spec)
    except ValueError as e:
        raise UsageError(str(e)) from None


def check_model_name(spec):
    """Raise :class:`UsageError` unless ``spec`` names a zoo model or a flex constructor
    with options it has (checked before any data is read or any process waits)."""
    from .. import model_zoo
    try:
        model_zoo.resolve_model_spec(spec)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return parse_model_spec(spec)


def build_model(spec, classes, stem=None, clip_threshold=1.3, bits=1, bits_a=1,
                scaling="none", **extra):
    """Build ``spec`` (zoo name or ``constructor:key=value,...``) with
    :func:`bmx.model_zoo.get_model`; raises :class:`UsageError` for an unknown model or
    bad arguments."""
    import mxnet as mx
    from .. import model_zoo
    from ..nn import set_binary_layer_config
    check_model_name(spec)
    common = dict(classes=classes, clip_threshold=clip_threshold, bits=bits, bits_a=bits_a)
    if stem is not None:
        common["stem"] = stem
    common.update(extra)
    approx = None if scaling in (None, "none") else scaling
    with set_binary_layer_config(bits=bits, bits_a=bits_a, grad_cancel=clip_threshold,
                                 approximation=approx):
        try:
            return model_zoo.get_model(spec, **common)
        except (TypeError, ValueError, KeyError, mx.base.MXNetError) as e:
            raise UsageError(f"cannot build model {spec!r}: {_first_line(e)}") from None


def _default_stem(model_spec, image_shape):
    return "thumbnail" if max(image_shape[1:]) < 50 else None
