"""Checks llmfleet's LiteLLM config and hook against LiteLLM's own code. Runs in LiteLLM's virtualenv (.tools/litellm),
not in pytest's: `python litellm_check.py HOOK_FILE < config.json` prints a JSON list of problems (empty: none).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import typing

import litellm
from litellm.caching.caching import Cache
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import ConfigYAML
from litellm.types.caching import CachingSupportedCallTypes

HANDLED = {"cache", "cache_params", "callbacks"}
"""litellm_settings keys the proxy acts on itself; it sets every other one as an attribute of the litellm module."""


def problems(config: dict[str, typing.Any], hook_file: str) -> list[str]:
    ConfigYAML.model_validate(config)  # LiteLLM's own model of config.yaml (raises on a wrong shape)
    found: list[str] = []
    settings = config["litellm_settings"]
    cache_params = settings["cache_params"]
    accepted = inspect.signature(Cache.__init__).parameters
    found += [f"cache_params.{k} is not a parameter of Cache" for k in cache_params if k not in accepted]
    call_types = set(typing.get_args(CachingSupportedCallTypes))
    found += [f"call type {t} unknown" for t in cache_params["supported_call_types"] if t not in call_types]
    router = inspect.signature(litellm.Router.__init__).parameters
    found += [f"router_settings.{k} is not a parameter of Router" for k in config["router_settings"] if k not in router]
    unknown = [k for k in settings if k not in HANDLED and not hasattr(litellm, k)]
    found += [f"litellm_settings.{k} is no litellm setting" for k in unknown]
    spec = importlib.util.spec_from_file_location("llmfleet_cache_hook", hook_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not isinstance(module.hook, CustomLogger):
        found.append("the hook is not a CustomLogger")
    for method in ("async_pre_call_hook", "async_pre_call_deployment_hook"):
        ours = list(inspect.signature(getattr(type(module.hook), method)).parameters)
        theirs = list(inspect.signature(getattr(CustomLogger, method)).parameters)
        if ours != theirs:
            found.append(f"{method} parameters {ours} != CustomLogger's {theirs}")
    return found


if __name__ == "__main__":
    print(json.dumps(problems(json.load(sys.stdin), sys.argv[1])))
