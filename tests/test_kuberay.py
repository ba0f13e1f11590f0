"""deploy/kuberay/rayservice.yaml carries config.yaml as its Serve config: only the args a
cluster must change (shared folders, the PostgreSQL job store) differ."""

from __future__ import annotations

from pathlib import Path

import yaml

from serve_app.local import load_config
from serve_app.settings import AppSettings

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_ARGS = {"model_dir", "job_store_url", "job_media_folders", "job_output_folders"}


def test_the_rayservice_serves_config_yaml() -> None:
    manifest = yaml.safe_load((ROOT / "deploy" / "kuberay" / "rayservice.yaml").read_text())
    assert manifest["kind"] == "RayService"
    served = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    config = load_config("config.yaml")
    served_args = served["applications"][0].pop("args")
    config_args = config["applications"][0].pop("args")
    assert served == config, "the manifest's Serve config drifted from config.yaml"
    assert {k: v for k, v in served_args.items() if k not in CLUSTER_ARGS} == {
        k: v for k, v in config_args.items() if k not in CLUSTER_ARGS
    }
    settings = AppSettings.model_validate(served_args)
    assert settings.job_store_url.startswith("postgresql://") and str(settings.model_dir) == "/models"
    mounts = manifest["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "models", "mountPath": "/models"} in mounts
