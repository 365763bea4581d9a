"""The offline engine: run the real Pulumi program under Pulumi's mocks and record what it would create.

No Pulumi CLI and no cloud: `run_program` executes infra/__main__.py against `RecordingMocks`, which
answers every registration with realistic outputs (infra/render/mock_outputs.py) and records each resource's
type, name, URN, parent, provider, dependencies and inputs, and which input paths were secret.
`llmfleet render` and the graph tests read the resulting `OfflineRun`; tests of one component install
the same recorder (`RecordingMocks().install()`): there is no other.

Secrets: Pulumi's deserializer lifts a nested secret up to its top-level property, so the monitor
request is inspected before deserialization to keep the exact path (`stringData.token`, not
`stringData`). That needs the recording monitor `RecordingMocks.install` sets up; with plain
`pulumi.runtime.set_mocks(RecordingMocks())` parents and dependencies are unknown, secrets top-level only.
"""

from __future__ import annotations

import contextvars
import json
import logging
import runpy
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pulumi
import yaml
from google.protobuf import struct_pb2
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await  # pyright: ignore[reportPrivateUsage]

from llmfleet.components.sizing.errors import PlanningError
from llmfleet.infra.config import PROJECT_ROOT, ConfigError, load_stack, stack_path
from llmfleet.infra.render.mock_outputs import mock_call, mock_outputs

PROJECT = "llmfleet"
PROGRAM = PROJECT_ROOT / "infra" / "__main__.py"
SECRET_PLACEHOLDER = "offline-secret-placeholder"
"""The value every `secure:` stack value gets under the offline engine (never a real secret)."""
REDACTED = "[secret]"

Path_ = tuple[str | int, ...]
_SECRET_SIG = (rpc._special_sig_key, rpc._special_secret_sig)  # pyright: ignore[reportPrivateUsage]


class OfflineProgramError(Exception):
    """The program failed under the offline engine for a reason that is not the user's input."""


@dataclass(frozen=True)
class RecordedResource:
    """One registration, as the engine would have received it."""

    type: str
    name: str
    urn: str
    parent: str | None
    """URN of the parent resource (the stack or a component); None when unknown."""
    provider: str | None
    """URN of the explicit provider; None for the default provider (or components)."""
    custom: bool
    inputs: dict[str, Any]
    """Plain inputs (camelCase keys, as the provider receives them), secrets unwrapped."""
    secret_paths: frozenset[Path_]
    outputs: dict[str, Any] = field(repr=False)
    dependencies: frozenset[str] = frozenset()
    """URNs the registration waits for, as sent to the engine (depends_on, parents' and inputs' resources)."""

    @property
    def secret_fields(self) -> set[str]:
        """Secret input paths written `spec.template.spec.containers[0].env[1].value`."""
        return {format_path(p) for p in self.secret_paths}

    def redacted_inputs(self) -> dict[str, Any]:
        return cast(dict[str, Any], redact(self.inputs, self.secret_paths))


def format_path(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def redact(value: Any, paths: frozenset[Path_], here: Path_ = ()) -> Any:
    """`value` with every value under a secret path replaced by "[secret]".

    A secret map or list keeps its shape (`stringData: {token: "[secret]"}`): its keys are not secret,
    and a rendered Secret still reads, and validates, as a Secret.
    """
    if here in paths:
        return _redact_leaves(value)
    if isinstance(value, dict):
        items = cast(dict[str, Any], value).items()
        return {k: redact(v, paths, (*here, k)) for k, v in items}
    if isinstance(value, list):
        return [redact(v, paths, (*here, i)) for i, v in enumerate(cast(list[Any], value))]
    return value


def _redact_leaves(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _redact_leaves(v) for k, v in cast(dict[str, Any], value).items()}
    if isinstance(value, list):
        return [_redact_leaves(v) for v in cast(list[Any], value)]
    return REDACTED


def _secret_paths(value: Any, here: Path_ = ()) -> Iterator[Path_]:
    """Paths of the secret-signed values in a protobuf Struct, before deserialization lifts them."""
    if isinstance(value, struct_pb2.Value):
        kind = value.WhichOneof("kind")
        if kind in ("struct_value", "list_value"):
            yield from _secret_paths(getattr(value, kind), here)
    elif isinstance(value, struct_pb2.Struct):
        if _SECRET_SIG[0] in value.fields and value.fields[_SECRET_SIG[0]].string_value == _SECRET_SIG[1]:
            yield here
            return
        for key, child in value.fields.items():
            yield from _secret_paths(child, (*here, key))
    elif isinstance(value, struct_pb2.ListValue):
        for index, child in enumerate(value.values):
            yield from _secret_paths(child, (*here, index))


def _unwrap(value: Any) -> Any:
    """Plain Python values: secrets unwrapped (their paths are kept apart), integral numbers as int."""
    if rpc.is_rpc_secret(value):
        return _unwrap(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in cast(dict[str, Any], value).items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in cast(list[Any], value)]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # protobuf carries every number as a double; manifests want 8000, not 8000.0
    return value


def make_urn(parent: str, type_: str, name: str) -> str:
    """The URN the mock monitor gives a resource (same rule as pulumi.runtime.mocks.MockMonitor)."""
    if parent:
        type_ = parent.split("::")[2].split("$")[-1] + "$" + type_
    return f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}::{type_}::{name}"


_REQUEST = threading.local()
"""The RegisterResource request being served on this thread (mock calls run in a thread pool)."""


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """MockMonitor that lets RecordingMocks see the raw request (parent, exact secret paths)."""

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method's name
        _REQUEST.current = request
        try:
            return super().RegisterResource(request)  # pyright: ignore[reportUnknownMemberType]
        finally:
            _REQUEST.current = None


class RecordingMocks(pulumi.runtime.Mocks):
    """Mocks that answer with realistic outputs and record every resource registered."""

    def __init__(self, on_resource: Callable[[str], None] | None = None) -> None:
        self.resources: list[RecordedResource] = []
        self._on_resource = on_resource
        """Told each resource's name as it registers (render's progress on a terminal)."""
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._by_urn: dict[str, RecordedResource] = {}

    def install(self, stack: str = "test", project: str = PROJECT) -> RecordingMocks:
        """Make these mocks the Pulumi runtime's, with the recording monitor and a new root stack; returns self."""
        settings.ROOT.set(None)
        pulumi.runtime.set_mocks(self, project=project, stack=stack, preview=False, monitor=RecordingMonitor(self))
        return self

    def provider_inputs(self, provider_ref: str | None) -> dict[str, Any]:
        """Inputs of the provider a reference (`<urn>::<id>`) points at; {} for the default provider."""
        urn = provider_ref.rsplit("::", 1)[0] if provider_ref else ""
        with self._lock:
            found = self._by_urn.get(urn)
        return found.inputs if found else {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        raw_inputs = cast(dict[str, Any], args.inputs)  # pyright: ignore[reportUnknownMemberType]
        request = getattr(_REQUEST, "current", None)
        parent = cast(str, request.parent) if request is not None and request.parent else None
        dependencies = frozenset[str]()
        if request is not None:
            secret_paths = frozenset(_secret_paths(request.object))
            dependencies = frozenset(cast(list[str], request.dependencies))
        else:
            secret_paths = frozenset[Path_]((k,) for k, v in raw_inputs.items() if rpc.is_rpc_secret(v))
        inputs = cast(dict[str, Any], _unwrap(raw_inputs))
        urn = make_urn(parent or "", args.typ, args.name)
        provider = self.provider_inputs(args.provider)
        resource_id, extra = mock_outputs(args.typ, args.name, urn, inputs, provider)
        outputs = {**raw_inputs, **extra}
        record = RecordedResource(
            type=args.typ,
            name=args.name,
            urn=urn,
            parent=parent,
            provider=args.provider.rsplit("::", 1)[0] if args.provider else None,
            custom=bool(args.custom),
            inputs=inputs,
            secret_paths=secret_paths,
            outputs=outputs,
            dependencies=dependencies,
        )
        with self._lock:
            self.resources.append(record)
            self._by_urn[urn] = record
        if self._on_resource is not None:
            self._on_resource(args.name)
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        arguments = cast(dict[str, Any], _unwrap(args.args))  # pyright: ignore[reportUnknownMemberType]
        with self._lock:
            self.calls.append((args.token, arguments))
        # No check failures: an empty list, not None (pulumi's MockMonitor.Invoke iterates it, despite
        # the Optional in Mocks.call's signature; None fails every invoke with "'NoneType' object is not iterable").
        return mock_call(args.token, arguments, self.provider_inputs(args.provider)), []


@dataclass
class OfflineRun:
    """What one program run under the offline engine registered and exported."""

    stack: str
    resources: list[RecordedResource]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    log: list[str]
    region_keys: list[str] = field(default_factory=list[str])
    """`<cloud>-<region>` of every region in the stack: the prefix of every resource name in that region."""

    def by_type(self, type_token: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_token]

    def region_of(self, resource: RecordedResource) -> str | None:
        """The region a resource belongs to (its name starts with the region key), None for global ones."""
        from llmfleet.infra.render.manifests import region_of

        return region_of(resource.name, self.region_keys)

    def by_name(self, name: str) -> RecordedResource:
        for resource in self.resources:
            if resource.name == name:
                return resource
        raise KeyError(f"no resource named {name}; names: {sorted(r.name for r in self.resources)}")

    def kubernetes_objects(self, redacted: bool = True) -> list[tuple[RecordedResource, dict[str, Any]]]:
        """(resource, manifest) for every Kubernetes object, custom resources included."""
        from llmfleet.infra.render.manifests import to_manifest

        found: list[tuple[RecordedResource, dict[str, Any]]] = []
        for resource in self.resources:
            manifest = to_manifest(resource, redacted)
            if manifest is not None:
                found.append((resource, manifest))
        return found

    def helm_releases(self, redacted: bool = True) -> list[tuple[RecordedResource, dict[str, Any]]]:
        """(resource, {name, namespace, chart, repository, version, values}) for every Helm release/chart."""
        from llmfleet.infra.render.manifests import to_helm_release

        found: list[tuple[RecordedResource, dict[str, Any]]] = []
        for resource in self.resources:
            release = to_helm_release(resource, redacted)
            if release is not None:
                found.append((resource, release))
        return found


def stack_config(path: Path) -> tuple[dict[str, str], list[str]]:
    """A stack file's `config:` as Pulumi passes it to a program: JSON strings, `secure:` values secret."""
    document = cast(dict[str, Any], yaml.safe_load(path.read_text()))
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in cast(dict[str, Any], document["config"]).items():
        full_key = key if ":" in key else f"{PROJECT}:{key}"
        if isinstance(value, dict) and set(cast(dict[str, Any], value)) == {"secure"}:
            config[full_key] = SECRET_PLACEHOLDER
            secret_keys.append(full_key)
        else:
            config[full_key] = value if isinstance(value, str) else json.dumps(value)
    return config, secret_keys


def run_program(
    stack: str | None = None,
    stack_file: Path | None = None,
    program: Path | None = None,
    on_resource: Callable[[str], None] | None = None,
) -> OfflineRun:
    """Run the Pulumi program (default infra/__main__.py) for a stack under RecordingMocks.

    The stack file is validated first (infra.config.load_stack), so a bad stack fails with the field
    named before anything runs; the program's own errors come out as it raises them (ConfigError /
    PlanningError); any other failure raises OfflineProgramError naming the exception. Each run gets a
    fresh copy of the SDK's context variables, so runs in one process do not see each other's resources.
    `on_resource` is told each resource's Pulumi name as it registers (from the SDK's worker threads).
    """
    name, spec = load_stack(stack, stack_file)
    config, secret_keys = stack_config(stack_file or stack_path(name))
    run = contextvars.copy_context().run(
        _run_in_context, name, config, secret_keys, program or PROGRAM, on_resource, PROJECT
    )
    run.region_keys = [region.key for region in spec.regions]
    return run


def run_project(program: Path, project: str, stack: str = "dev", config: dict[str, str] | None = None) -> OfflineRun:
    """Run any Pulumi Python program (a folder with __main__.py, or a file) under RecordingMocks.

    For a program that is not ours (a user's project importing the components, e.g. examples/): no
    llmfleet stack file is read; `config` is the program's config as `<project>:<key>` -> value. A
    folder is run as Pulumi runs it: its directory first on sys.path, so its own packages import.
    """
    return contextvars.copy_context().run(_run_in_context, stack, dict(config or {}), [], program, None, project)


def _run_in_context(
    stack: str,
    config: dict[str, str],
    secret_keys: list[str],
    program: Path,
    on_resource: Callable[[str], None] | None = None,
    project: str = PROJECT,
) -> OfflineRun:
    log = _LogCollector()
    logger = logging.getLogger(f"llmfleet.offline.{id(log)}")
    logger.propagate = False
    logger.addHandler(log)
    settings.ROOT.set(None)
    set_all_config(config, secret_keys)
    mocks = RecordingMocks(on_resource)
    pulumi.runtime.set_mocks(
        mocks, project=project, stack=stack, preview=False, logger=logger, monitor=RecordingMonitor(mocks)
    )
    try:
        _sync_await(run_pulumi_func(lambda: _run_path(program)))
        outputs, secret_outputs = _sync_await(_resolve_stack_outputs())
    except (ConfigError, PlanningError):
        raise
    except Exception as exc:
        where = _program_frame(exc)
        raise OfflineProgramError(
            f"the program failed under the offline engine: {type(exc).__name__}: {exc}{where}"
        ) from exc
    finally:
        logger.removeHandler(log)
    return OfflineRun(stack, mocks.resources, outputs, secret_outputs, log.messages)


def _run_path(program: Path) -> None:
    runpy.run_path(str(program), run_name="__main__")


async def _resolve_stack_outputs() -> tuple[dict[str, Any], set[str]]:
    root = settings.get_root_resource()
    exported = cast(dict[str, Any], getattr(root, "outputs", {}))
    values: dict[str, Any] = {}
    secret: set[str] = set()
    for key, value in exported.items():
        output = pulumi.Output.from_input(value)
        values[key] = _unwrap(await output.future())
        if await output.is_secret():
            secret.add(key)
    return values, secret


def _program_frame(exc: BaseException) -> str:
    """` (at components/x.py:12)`: the innermost frame inside the project, for a bug report."""
    tb = exc.__traceback__
    where = ""
    while tb is not None:
        filename = Path(tb.tb_frame.f_code.co_filename)
        if filename.is_relative_to(PROJECT_ROOT) and ".venv" not in filename.parts and filename != Path(__file__):
            where = f" (at {filename.relative_to(PROJECT_ROOT)}:{tb.tb_lineno})"
        tb = tb.tb_next
    return where


class _LogCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname.lower()}: {record.getMessage()}")
