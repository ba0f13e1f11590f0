"""config.yaml (GPU) and config.cpu.yaml (CPU) are one graph with different resources."""

from __future__ import annotations

import pydantic
import pytest
from ray.serve.schema import ServeDeploySchema

from deployments.app import build_app
from deployments.transcriber import BatchConfig
from serve_app.local import load_config
from serve_app.settings import AppSettings


@pytest.fixture(params=["config.yaml", "config.cpu.yaml"])
def config(request) -> dict:
    return load_config(request.param)


def deployments(config: dict) -> dict[str, dict]:
    return {d["name"]: d for d in config["applications"][0]["deployments"]}


def test_both_configs_are_valid_serve_configs_with_valid_args(config: dict) -> None:
    ServeDeploySchema.model_validate(config)
    [app] = config["applications"]
    assert app["import_path"] == "deployments.app:build_app"
    AppSettings.model_validate(app["args"])


def test_the_two_configs_are_the_same_graph() -> None:
    gpu, cpu = load_config("config.yaml"), load_config("config.cpu.yaml")
    gpu_args, cpu_args = dict(gpu["applications"][0]["args"]), dict(cpu["applications"][0]["args"])
    # Only the local trial may go without keys: it listens on 127.0.0.1.
    assert "allow_anonymous" not in gpu_args and cpu_args.pop("allow_anonymous") is True
    # A CPU diarizes a long file more slowly: its limit may be longer, never shorter.
    assert cpu_args.pop("request_timeout_s") >= gpu_args.pop("request_timeout_s")
    assert gpu_args == cpu_args
    assert deployments(gpu).keys() == deployments(cpu).keys() == {"Ingress", "ModelStore", "Transcriber", "Diarizer"}
    for name in ("Ingress", "ModelStore"):
        assert deployments(gpu)[name] == deployments(cpu)[name]
    for name in ("Transcriber", "Diarizer"):
        runtime_env = deployments(cpu)[name]["ray_actor_options"]["runtime_env"]
        assert deployments(gpu)[name]["ray_actor_options"]["runtime_env"] == runtime_env
        assert runtime_env["env_vars"]["MALLOC_ARENA_MAX"] == "2"


def test_the_transcriber_is_pinned_to_a_gpu_and_autoscaled() -> None:
    graph = deployments(load_config("config.yaml"))
    transcriber, diarizer = graph["Transcriber"], graph["Diarizer"]
    assert transcriber["ray_actor_options"]["num_gpus"] > 0
    assert transcriber["autoscaling_config"]["min_replicas"] >= 1
    # One Transcriber and one Diarizer replica share a GPU.
    assert transcriber["ray_actor_options"]["num_gpus"] + diarizer["ray_actor_options"]["num_gpus"] <= 1


def test_the_transcriber_queue_is_bounded(config: dict) -> None:
    assert deployments(config)["Transcriber"]["max_queued_requests"] > 0


def test_on_cpu_the_replicas_threads_fit_the_cores() -> None:
    graph = deployments(load_config("config.cpu.yaml"))
    assert all(d["ray_actor_options"].get("num_gpus", 0) == 0 for d in graph.values())
    # A Transcriber replica decodes on num_cpus threads (serve_app/engine/budget.py); the Diarizer,
    # reserving none, runs one thread, only while a diarization runs.
    most = sum(
        d["ray_actor_options"]["num_cpus"] * d.get("autoscaling_config", {}).get("max_replicas", d.get("num_replicas", 1))
        for d in graph.values()
    )
    assert most <= 2


def test_the_transcriber_batch_config_is_valid(config: dict) -> None:
    user_config = deployments(config)["Transcriber"]["user_config"]
    assert BatchConfig.model_validate(user_config).batch_audio_seconds >= 30


def test_bad_args_are_refused_before_anything_binds() -> None:
    with pytest.raises(pydantic.ValidationError, match="max_loaded_models"):
        build_app({"max_loaded_models": 0})
    with pytest.raises(pydantic.ValidationError, match="Extra inputs"):
        build_app({"model_folder": "/tmp"})


def test_the_local_trial_listens_on_loopback_only() -> None:
    assert load_config("config.cpu.yaml")["http_options"]["host"] == "127.0.0.1"


def test_the_cluster_config_will_not_start_without_keys(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("WHISPER_SERVE_API_KEYS", raising=False)
    monkeypatch.delenv("WHISPER_SERVE_ADMIN_KEYS", raising=False)
    args = load_config("config.yaml")["applications"][0]["args"] | {"model_dir": str(tmp_path)}
    with pytest.raises(ValueError, match="no API key is configured.*allow_anonymous: true"):
        build_app(args)
    monkeypatch.setenv("WHISPER_SERVE_ADMIN_KEYS", "an-admin-key")
    build_app(args)
    monkeypatch.delenv("WHISPER_SERVE_ADMIN_KEYS")
    keys = tmp_path / "keys"
    keys.write_text("# ordinary keys\nkey-1\n")
    build_app(args | {"api_keys_file": str(keys)})
    build_app(args | {"allow_anonymous": True})


def test_the_job_store_url_defaults_to_the_file_in_job_store_dir(tmp_path, monkeypatch) -> None:
    from serve_app.jobs.store import sqlite_url

    assert AppSettings().job_store_url == sqlite_url(AppSettings().job_store_dir)
    settings = AppSettings(job_store_dir=tmp_path / "jobs")
    assert settings.job_store_url == f"sqlite:///{tmp_path}/jobs/jobs.sqlite3"
    assert AppSettings(job_store_dir=tmp_path, job_store_url=None).job_store_url == f"sqlite:///{tmp_path}/jobs.sqlite3"
    # A relative SQLite path is taken from where the config is read, as job_store_dir is.
    monkeypatch.chdir(tmp_path)
    assert AppSettings(job_store_url="sqlite:///queue/jobs.db").job_store_url == f"sqlite:///{tmp_path}/queue/jobs.db"
    assert AppSettings(job_store_url="sqlite:////var/jobs.db").job_store_url == "sqlite:////var/jobs.db"


def test_a_postgresql_job_store_url_is_kept_and_others_are_refused() -> None:
    url = "postgresql://whisper@db.internal:5432/whisper?sslmode=require"
    assert AppSettings(job_store_url=url).job_store_url == url
    for wrong in ("mysql://secret@db/x", "sqlite://host/jobs.db", "sqlite:///", "/var/lib/jobs"):
        with pytest.raises(pydantic.ValidationError, match="job_store_url must be sqlite:////absolute"):
            AppSettings(job_store_url=wrong)
    with pytest.raises(pydantic.ValidationError):
        AppSettings(job_lease_s=0)
