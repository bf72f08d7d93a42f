"""The docker-compose deployment, checked statically: no Docker engine, no network.

- docker-compose.yml validates against the Compose Specification's JSON schema (the copy
  that the check-jsonschema package ships); when a Compose v2 CLI is installed,
  `docker compose config -q` must accept it too (skipped, with the reason, otherwise).
- Every variable the worker and the emulator get is one that settings.py reads, with the
  same defaults; every variable the file interpolates is documented in .env.example.
- Long-running services have healthchecks, dependencies have conditions, the worker scales,
  the emulator is behind its profile, GEMINI_API_KEY reaches the worker alone.
- The Temporal support files agree with the code: the dynamic config partitions exactly the
  Gemini queue, the one-shot job registers exactly models.search_attributes.ALL.
- The Dockerfile pins its base image, runs as a non-root user and installs the project;
  .dockerignore lets in what `pip install .` needs and keeps .env out.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml
from temporalio.envconfig import ClientConfig

from models import search_attributes
from settings import AppSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
PYPROJECT = ROOT / "pyproject.toml"
DYNAMIC_CONFIG_KEYS = (
    "matching.numTaskqueueReadPartitions",
    "matching.numTaskqueueWritePartitions",
)

# ${VAR}, ${VAR:-default}, ${VAR?err}..., and bare $VAR; "$$" is a literal dollar.
_INTERPOLATION = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))")
_WITH_DEFAULT = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*):?-(.*)\}$")


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    """docker-compose.yml as data (YAML anchors and merge keys resolved)."""
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


def services() -> dict[str, dict[str, Any]]:
    """The services of docker-compose.yml by name."""
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A service's `environment`, as a mapping whichever syntax the file uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {pair[0]: (pair[1] if len(pair) == 2 else None) for pair in pairs}
    return {key: (None if value is None else str(value)) for key, value in env.items()}


def one_shot_services() -> set[str]:
    """Services that others wait for to complete: jobs, not long-running services."""
    return {
        name
        for service in services().values()
        for name, dependency in dependencies(service).items()
        if dependency.get("condition") == "service_completed_successfully"
    }


def dependencies(service: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A service's depends_on as {service: options}; the short list form gives no options."""
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return {name: {} for name in depends}
    return {name: dict(options or {}) for name, options in depends.items()}


def strings(node: Any) -> Iterator[str]:
    """Every string value in a YAML tree (keys are not interpolated by Compose)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def interpolated(text: str) -> set[str]:
    """The variable names that Compose interpolates in text."""
    text = text.replace("$$", "")
    return {braced or bare for braced, bare in _INTERPOLATION.findall(text)}


def env_example() -> dict[str, str]:
    """Variables documented in .env.example, set or commented out, with their example value."""
    documented: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            documented.setdefault(match.group(1), match.group(2).strip())
    return documented


def settings_variables() -> dict[str, Any]:
    """Environment variable name -> default of every AppSettings field."""
    prefix = str(AppSettings.model_config.get("env_prefix") or "")
    names: dict[str, Any] = {}
    for field_name, field in AppSettings.model_fields.items():
        alias = field.validation_alias
        name = alias if isinstance(alias, str) else prefix + field_name
        names[name.upper()] = field.default
    return names


def read_by_envconfig(name: str) -> bool:
    """True when Temporal's envconfig, which settings.temporal_connect_config() uses, reads it.

    Probed, not listed: a variable is read when setting it changes the loaded connect
    config, or makes loading fail (it was parsed). Files are ignored, so a developer's
    Temporal config file cannot change the answer.
    """

    def load(env: dict[str, str]) -> str:
        try:
            config = ClientConfig.load_client_connect_config(
                disable_file=True, override_env_vars=env
            )
        except Exception as err:  # any parse error proves the variable was read
            return f"error: {err!r}"
        return repr(sorted(config.items()))

    return load({name: "probe.invalid:7233"}) != load({})


def default_of(value: str) -> tuple[str, str] | None:
    """("VAR", "default") for a value "${VAR:-default}" or "${VAR-default}", else None."""
    match = _WITH_DEFAULT.match(value)
    return (match.group(1), match.group(2)) if match else None


# --------------------------------------------------------------------------------------
# The file is valid Compose
# --------------------------------------------------------------------------------------


@cache
def compose_schema() -> dict[str, Any]:
    """The Compose Specification schema, as vendored by check-jsonschema (no network)."""
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text())
    assert isinstance(schema, dict)
    return schema


def schema_errors(document: Any) -> list[str]:
    """Every violation of the Compose schema in document, one line each."""
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [
        f"{'/'.join(str(part) for part in error.absolute_path) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=str)
    ]


def test_compose_file_matches_the_compose_specification() -> None:
    assert compose_schema().get("title") == "Compose Specification"
    assert schema_errors(compose()) == []


def test_schema_check_catches_a_misspelt_key() -> None:
    broken = json.loads(json.dumps(compose()))
    broken["services"]["worker"]["healthchek"] = broken["services"]["worker"].pop("healthcheck")
    assert any("healthchek" in error for error in schema_errors(broken))


def compose_cli() -> list[str] | None:
    """The command of a Compose v2 CLI (`docker compose` or a v2 `docker-compose`), if any."""
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        try:
            result = subprocess.run(
                [*command, "version", "--short"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        version = result.stdout.strip().lstrip("v")
        # Compose v1 (Debian's docker-compose 1.29) predates parts of the Compose
        # Specification this file uses (depends_on.required, healthcheck.start_interval).
        if result.returncode == 0 and version and int(version.split(".")[0]) >= 2:
            return command
    return None


@pytest.mark.parametrize("profiles", [(), ("emulator",)], ids=["default", "emulator"])
def test_docker_compose_config_accepts_the_file(profiles: tuple[str, ...]) -> None:
    command = compose_cli()
    if command is None:
        pytest.skip(
            "no Compose v2 CLI here (`docker compose` plugin or docker-compose >= 2): "
            "the schema test above validated the file"
        )
    profile_args = [arg for profile in profiles for arg in ("--profile", profile)]
    files = ["--project-directory", str(ROOT), "-f", str(COMPOSE_FILE)]
    result = subprocess.run(
        [*command, *files, "--env-file", str(ENV_EXAMPLE), *profile_args, "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------------------
# Environment variables
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["worker", "emulator"])
def test_every_variable_set_on_the_app_services_is_read_by_settings(name: str) -> None:
    known = settings_variables()
    unread = [
        variable
        for variable in environment(services()[name])
        if variable not in known and not read_by_envconfig(variable)
    ]
    assert unread == [], f"{name} sets variables settings.py never reads: {unread}"


def test_envconfig_probe_tells_read_variables_from_others() -> None:
    assert read_by_envconfig("TEMPORAL_ADDRESS")
    assert read_by_envconfig("TEMPORAL_NAMESPACE")
    assert read_by_envconfig("TEMPORAL_API_KEY")
    assert not read_by_envconfig("TEMPORAL_NO_SUCH_SETTING")
    assert not read_by_envconfig("TASK_QUEUE")


def test_worker_interpolates_each_setting_under_its_own_name_and_default() -> None:
    known = settings_variables()
    mismatches = []
    for variable, value in environment(services()["worker"]).items():
        if value is None or variable not in known or "$" not in value:
            continue
        parsed = default_of(value)
        assert parsed is not None, f"{variable}: use ${{{variable}:-default}}, not {value!r}"
        source, default = parsed
        assert source == variable, f"{variable} is read from ${{{source}}}"
        expected = known[variable]
        # An empty default stands for None: settings.py treats an empty value as unset.
        ok = default == "" if expected is None else type(expected)(default) == expected
        if not ok:
            mismatches.append(f"{variable}: compose {default!r}, settings.py {expected!r}")
    assert mismatches == []


def test_every_interpolated_variable_is_documented_in_env_example() -> None:
    used = {name for text in strings(compose()) for name in interpolated(text)}
    # Variables passed through without a value come from the shell or .env as well.
    used |= {
        variable
        for service in services().values()
        for variable, value in environment(service).items()
        if value is None
    }
    missing = sorted(used - env_example().keys())
    assert missing == [], f"add to .env.example: {missing}"


def test_gemini_api_key_reaches_the_worker_only() -> None:
    worker_env = environment(services()["worker"])
    assert "GEMINI_API_KEY" in worker_env
    assert worker_env["GEMINI_API_KEY"] is None, "pass the key through, never a literal"
    for name, service in services().items():
        assert "env_file" not in service, f"{name}: env_file would hand it all of .env"
        if name != "worker":
            assert "GEMINI_API_KEY" not in json.dumps(service), name


# --------------------------------------------------------------------------------------
# Services
# --------------------------------------------------------------------------------------


def test_every_long_running_service_has_a_healthcheck() -> None:
    jobs = one_shot_services()
    for name, service in services().items():
        if name in jobs:
            assert service.get("restart") == "no", f"one-shot {name} must not restart"
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name
        assert service.get("restart") == "unless-stopped", name


def test_every_dependency_has_a_condition_it_can_meet() -> None:
    all_services = services()
    jobs = one_shot_services()
    for name, service in all_services.items():
        for dependency, options in dependencies(service).items():
            assert dependency in all_services, f"{name} -> {dependency}: no such service"
            condition = options.get("condition")
            assert condition in ("service_healthy", "service_completed_successfully"), (
                f"{name} -> {dependency}: condition {condition!r}"
            )
            if condition == "service_healthy":
                assert "healthcheck" in all_services[dependency], f"{name} -> {dependency}"
            else:
                assert dependency in jobs


def test_worker_waits_for_temporal_redis_and_the_search_attributes() -> None:
    depends = dependencies(services()["worker"])
    assert depends["temporal"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"
    assert depends["temporal-init"]["condition"] == "service_completed_successfully"


def test_worker_can_be_scaled_and_stops_gracefully() -> None:
    worker = services()["worker"]
    for key in ("container_name", "ports", "hostname"):
        assert key not in worker, f"worker must not set {key}: --scale worker=N needs that"
    assert "build" in worker
    assert worker.get("restart") == "unless-stopped"
    grace = re.fullmatch(r"(\d+)s", str(worker.get("stop_grace_period")))
    assert grace, "stop_grace_period in seconds, e.g. 150s"
    step_budget = AppSettings.model_fields["step_start_to_close_seconds"].default
    assert int(grace.group(1)) > step_budget


def test_emulator_is_optional_and_behind_its_profile() -> None:
    emulator = services()["emulator"]
    assert emulator.get("profiles") == ["emulator"]
    command = emulator.get("command")
    assert isinstance(command, list)
    assert command[:3] == ["python", "-m", "emulator"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = command[command.index("--port") + 1]
    assert "ports" not in emulator, "the emulator stays inside the compose network"
    for name, service in services().items():
        if "emulator" in dependencies(service):
            assert dependencies(service)["emulator"].get("required") is False, name
    # The worker's way to it, as documented in the file: GEMINI_BASE_URL in .env.
    base_url = environment(services()["worker"])["GEMINI_BASE_URL"]
    assert base_url == "${GEMINI_BASE_URL:-}"
    assert f"GEMINI_BASE_URL=http://emulator:{port}" in COMPOSE_FILE.read_text()


def test_images_are_pinned_and_temporal_images_match() -> None:
    tags: dict[str, str] = {}
    for name, service in services().items():
        image = str(service.get("image", ""))
        if "build" in service:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and re.match(r"^\d+\.\d+", tag), f"{name}: pin {image!r}"
        tags[repository] = tag
    assert tags["temporalio/server"] == tags["temporalio/admin-tools"], (
        "upgrade temporalio/server and temporalio/admin-tools together"
    )


def test_redis_persists_and_postgres_keeps_its_data() -> None:
    redis_service = services()["redis"]
    command = redis_service["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(str(v).endswith(":/data") for v in redis_service["volumes"])
    assert "redis-cli ping" in " ".join(redis_service["healthcheck"]["test"])
    postgres = services()["postgresql"]
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    named = set(compose().get("volumes") or {})
    assert {"postgres-data", "redis-data"} <= named


def test_bind_mounted_files_exist() -> None:
    for name, service in services().items():
        for volume in service.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} is missing"


# --------------------------------------------------------------------------------------
# Temporal support files agree with the code
# --------------------------------------------------------------------------------------


def test_dynamic_config_gives_the_gemini_queue_alone_one_partition() -> None:
    temporal = services()["temporal"]
    path = PurePosixPath(environment(temporal)["DYNAMIC_CONFIG_FILE_PATH"] or "")
    mounts = [str(v).split(":") for v in temporal["volumes"]]
    sources = [source for source, target, *_ in mounts if PurePosixPath(target) == path.parent]
    assert sources, f"no volume mounted at {path.parent}"
    config = yaml.safe_load((ROOT / sources[0] / path.name).read_text())

    worker_default = default_of(environment(services()["worker"])["GEMINI_TASK_QUEUE"] or "")
    assert worker_default is not None
    queue = worker_default[1]
    assert queue == AppSettings.model_fields["gemini_task_queue"].default
    assert queue == env_example()["GEMINI_TASK_QUEUE"]
    for key in DYNAMIC_CONFIG_KEYS:
        assert config[key] == [{"value": 1, "constraints": {"taskQueueName": queue}}], key


def test_one_shot_job_registers_exactly_the_workflow_search_attributes() -> None:
    init_env = environment(services()["temporal-init"])
    specs = (init_env["SEARCH_ATTRIBUTES"] or "").split()
    registered = {name: kind for name, _, kind in (spec.partition("=") for spec in specs)}
    expected = {
        key.name: key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_").title()
        for key in search_attributes.ALL
    }
    # Type names as `temporal operator search-attribute create --type` takes them.
    expected = {name: kind.replace("_", "") for name, kind in expected.items()}
    assert registered == expected
    assert init_env["TEMPORAL_NAMESPACE"] == environment(services()["worker"])["TEMPORAL_NAMESPACE"]


# --------------------------------------------------------------------------------------
# Dockerfile and .dockerignore
# --------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the Dockerfile's last stage, from its FROM on."""
    instructions = dockerfile_instructions()
    start = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[start:]


def test_dockerfile_base_images_are_pinned_pythons() -> None:
    stages: set[str] = set()
    for keyword, arguments in dockerfile_instructions():
        if keyword != "FROM":
            continue
        parts = arguments.split()
        image = next(part for part in parts if not part.startswith("--"))
        if image in stages:
            continue  # a previous stage, not an image
        match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim(-\w+)?(@sha256:[0-9a-f]+)?", image)
        assert match, f"pin the base image to a patch release: {image}"
        assert (int(match.group(1)), int(match.group(2))) in {(3, 11), (3, 12)}, image
        if len(parts) >= 3 and parts[-2].upper() == "AS":
            stages.add(parts[-1])


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [arguments for keyword, arguments in final_stage() if keyword == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_dockerfile_installs_the_project_and_runs_the_worker() -> None:
    runs = " ".join(
        arguments for keyword, arguments in dockerfile_instructions() if keyword == "RUN"
    )
    assert re.search(r"pip install [^&|;]*(?<=\s)\.(\s|$)", runs), "no `pip install .`"
    commands = [arguments for keyword, arguments in final_stage() if keyword == "CMD"]
    assert commands and json.loads(commands[-1]) == ["python", "-m", "worker"]
    healthcheck = services()["worker"]["healthcheck"]["test"]
    copied = [arguments for keyword, arguments in final_stage() if keyword == "COPY"]
    assert any(arguments.endswith(" " + healthcheck[-1]) for arguments in copied), healthcheck


def dockerignore_allows(path: str) -> bool:
    """Whether .dockerignore lets path into the build context (last matching rule wins)."""
    allowed = True
    for raw in DOCKERIGNORE.read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negated = rule.startswith("!")
        pattern = rule.lstrip("!").strip("/")
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(_dockerignore_match(pattern, prefix) for prefix in prefixes):
            allowed = negated
    return allowed


def _dockerignore_match(pattern: str, path: str) -> bool:
    """Go filepath.Match semantics plus Docker's `**` (any number of directories)."""
    if pattern.startswith("**/"):
        return any(
            _dockerignore_match(pattern[3:], "/".join(path.split("/")[i:]))
            for i in range(len(path.split("/")))
        )
    if pattern.count("/") != path.count("/"):
        return False
    return all(
        fnmatch.fnmatchcase(name, glob)
        for name, glob in zip(path.split("/"), pattern.split("/"), strict=True)
    )


def test_dockerignore_lets_in_the_project_and_keeps_secrets_out() -> None:
    project = tomllib.loads(PYPROJECT.read_text())
    setuptools = project["tool"]["setuptools"]
    needed = ["pyproject.toml", project["project"]["readme"], "deploy/worker_healthcheck.py"]
    needed += [f"{module}.py" for module in setuptools["py-modules"]]
    needed += [
        f"{pattern.rstrip('*')}/__init__.py"
        for pattern in setuptools["packages"]["find"]["include"]
    ]
    for path in needed:
        assert (ROOT / path).exists(), path
        assert dockerignore_allows(path), f".dockerignore keeps out {path}"
    for path in (".env", ".git/config", ".venv/bin/python", ".devstack/state.json", "tests/x.py"):
        assert not dockerignore_allows(path), f".dockerignore lets in {path}"
    assert not dockerignore_allows("models/__pycache__/lecture.cpython-311.pyc")
