"""Model specs: ``'name'`` (a registered model) or ``'constructor:key=value,...'``.

One parser for :func:`bmx.get_model`, ``bmx-train --model`` and ``bmx-convert``, e.g.
``"binarydensenet_flex:block_config=(2,2,2),growth_rate=32,reduction=2"`` (values are
Python literals). Keys are checked against the constructor's signature, so a typo is
named (with the nearest valid key) instead of surfacing as an unrelated error.
"""
import ast
import difflib
import inspect

__all__ = ["parse_model_spec", "FLEX_EXAMPLE", "check_spec_kwargs"]

FLEX_EXAMPLE = "binarydensenet_flex:block_config=(2,2,2),growth_rate=32,reduction=2"


def parse_model_spec(spec):
    """``'name'`` or ``'name:key=value,...'`` -> ``(name, kwargs)``.

    Raises
    ------
    ValueError
        Not of that form, or a value that is not a Python literal.
    """
    name, _, rest = str(spec).partition(":")
    name = name.strip()
    if not name.replace("-", "_").isidentifier():
        raise ValueError(f"unknown model {spec!r}: expected a model name or a spec "
                         f"NAME:key=value,... such as {FLEX_EXAMPLE}")
    kwargs = {}
    if rest.strip():
        try:
            call = ast.parse(f"f({rest})", mode="eval").body
            if call.args or any(kw.arg is None for kw in call.keywords):
                raise ValueError("positional values")
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        except (SyntaxError, ValueError) as e:
            raise ValueError(f"bad model spec {spec!r}: {e}; write key=value pairs with Python "
                             f"literals, e.g. {FLEX_EXAMPLE}") from None
    return name, kwargs


def check_spec_kwargs(name, fn, kwargs):
    """Raise ValueError naming any key of ``kwargs`` that ``fn`` does not accept by name
    (keyword arguments that would only reach ``**kwargs`` of the constructor chain)."""
    params = inspect.signature(fn).parameters
    valid = [p for p, v in params.items()
             if v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY)]
    for key in kwargs:
        if key not in valid:
            near = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"{name} has no option {key!r}{hint}; its options: "
                             f"{', '.join(valid)}")
