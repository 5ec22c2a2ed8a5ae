"""The pack's exception classes are reported as ``fluxdrag.<Name>``, not under an install path
(ComfyUI's execution.full_type_name prints ``__module__ + '.' + __qualname__``)."""
from fluxdrag.attention_patches.contextdrag import ContextDragError
from fluxdrag.core.cache import CacheBudgetError, CacheFreedError
from fluxdrag.core.safe_pickle import UnsafePickleError


def _reported(cls):
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def test_public_names():
    for cls in (ContextDragError, CacheBudgetError, CacheFreedError, UnsafePickleError):
        assert _reported(cls) == f"fluxdrag.{cls.__name__}"
