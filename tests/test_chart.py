"""The Helm chart (deploy/room-restyle), rendered offline with several value sets: lint, every object against
the Kubernetes schemas of 1.30 and 1.33, the KEDA and Prometheus-operator objects against their CRDs'
schemas, and the rules the chart promises (settings, secrets, probes, security, network policies)."""
import copy
import shutil
from pathlib import Path

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from client_api.config import Settings
from restyle.settings import ModelSettings

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "room-restyle"
CRDS = Path(__file__).parent / "crds"
KUBE_VERSIONS = ["1.30.0", "1.33.0"]
RELEASE, NAMESPACE = "rr", "restyle"
FULL = f"{RELEASE}-room-restyle"

BASE = {"storage": {"accessKeyId": "AKIA-test", "secretAccessKey": "s3-secret-value"},
        "redis": {"external": {"url": "rediss://:redis-pw-value@redis.example:6380/0", "address": "redis.example:6380",
                               "password": "redis-pw-value", "enableTLS": True}}}
VALUE_SETS = {
    # the defaults: external Redis, models on a volume filled by the build Job, workers and API autoscaled
    "external-redis-volume": {},
    "in-chart-redis-s3-keda": {
        "redis": {"inChart": True},
        "secrets": {"apiKeys": "k1,k2", "adminApiKey": "admin-key-value", "webhookSecret": "wh-secret-value"},
        "triton": {"modelStore": {"type": "s3", "s3": {"endpoint": "https://acct.r2.cloudflarestorage.com:443",
                                                       "accessKeyId": "models-id", "secretAccessKey": "models-key"}},
                   "autoscaling": {"enabled": True, "via": "keda"}, "serviceMonitor": {"enabled": True}},
        "api": {"ingress": {"enabled": True, "className": "nginx", "tlsSecretName": "restyle-tls"}},
        "settings": {"RESTYLE_WORKING_MAX_SIDE": "768"},
        "networkPolicy": {"apiChecksTriton": True},
    },
    "autoscaling-off": {
        "worker": {"autoscaling": {"enabled": False}, "metricsPort": 0},
        "api": {"autoscaling": {"enabled": False}},
        "storageLifecycle": {"enabled": False},
        "networkPolicy": {"enabled": False},
    },
    "existing-secrets-prometheus-adapter": {
        "secrets": {"existingSecret": "restyle-app"}, "storage": {"existingSecret": "restyle-s3"},
        "redis": {"external": {"existingSecret": "restyle-redis"}},
        "triton": {"autoscaling": {"enabled": True, "via": "prometheus-adapter"},
                   "modelStore": {"volume": {"build": {"enabled": False}}},
                   "compileCache": {"claim": "restyle-compile-cache"}},
    },
}
SECRET_VALUES = ["s3-secret-value", "redis-pw-value", "admin-key-value", "wh-secret-value", "models-key", "k1,k2"]


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def values(name: str) -> dict:
    return _merge(BASE, VALUE_SETS[name])


def render(vals: dict) -> list[dict]:
    with helm_python.Chart.load(CHART) as chart:
        files = chart.render(values=vals, name=RELEASE, namespace=NAMESPACE)
    return [doc for path, text in sorted(files.items()) if path.endswith(".yaml")
            for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module", params=list(VALUE_SETS))
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(values(request.param))


def by_kind(docs, kind) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs) -> dict[str, dict]:
    """name -> pod spec of every workload (CronJob's through its job template)."""
    out = {}
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            out[d["metadata"]["name"]] = d["spec"]["template"]["spec"]
        elif d["kind"] == "CronJob":
            out[d["metadata"]["name"]] = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return out


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_lint_strict(name):
    for kube in KUBE_VERSIONS:
        result = helm_python.lint(CHART, values(name), strict=True, kube_version=kube, namespace=NAMESPACE)
        # strict, as `helm lint --strict`: a warning (severity 2) fails like an error; infos (1) do not
        assert result["errors"] == [] and [m for m in result["messages"] if m["severity"] >= 2] == [], result


def test_lint_is_not_a_no_op(tmp_path):
    # (helm lint logs `fail`/`required` instead of failing: those are checked by rendering, below)
    shutil.copytree(CHART, tmp_path / "chart")
    (tmp_path / "chart" / "templates" / "broken.yaml").write_text("kind: ConfigMap\ndata: [[[\n")
    result = helm_python.lint(tmp_path / "chart", BASE, strict=True)
    assert any("broken.yaml" in m["path"] for m in result["messages"]), result


def test_bad_values_fail_the_render():
    with pytest.raises(helm_python.HelmError, match="must be volume or s3"):
        render(_merge(BASE, {"triton": {"modelStore": {"type": "nfs"}}}))
    with pytest.raises(helm_python.HelmError, match="redis.external.url"):
        render({"storage": BASE["storage"]})


def test_builtin_objects_validate_strictly(rendered):
    _name, docs = rendered
    for doc in docs:
        if doc["apiVersion"].endswith(("keda.sh/v1alpha1", "monitoring.coreos.com/v1")):
            continue
        for kube in KUBE_VERSIONS:
            # an unknown kind or a removed apiVersion raises SchemaNotFoundError: a failure here, not a warning
            kubernetes_validate.validate(doc, kube, strict=True)


def test_removed_api_versions_are_failures():
    hpa = {"apiVersion": "autoscaling/v2beta2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"},
           "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 2}}
    for kube in KUBE_VERSIONS:
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(hpa, kube, strict=True)


def _strict(schema):
    """A CRD's structural schema as JSON Schema that refuses unknown fields, like the API server's strict
    field validation (objects keep extra fields only where the CRD says x-kubernetes-preserve-unknown-fields)."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


CRD_SCHEMAS = {}
for path in sorted(CRDS.glob("*.yaml")):
    crd = yaml.safe_load(path.read_text())
    for api_version in crd["apiVersions"]:
        CRD_SCHEMAS[(api_version, crd["kind"])] = _strict(crd["openAPIV3Schema"])


def test_custom_resources_match_their_crds(rendered):
    name, docs = rendered
    custom = [d for d in docs if d["apiVersion"].endswith(("keda.sh/v1alpha1", "monitoring.coreos.com/v1"))]
    for doc in custom:
        schema = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        assert schema is not None, f"no vendored CRD schema for {doc['apiVersion']} {doc['kind']}"
        jsonschema.validate(doc, schema)
    expected = {"ScaledObject", "TriggerAuthentication"} if name != "autoscaling-off" else set()
    assert expected <= {d["kind"] for d in custom}


def test_crd_check_refuses_an_unknown_field():
    so = by_kind(render(values("external-redis-volume")), "ScaledObject")[f"{FULL}-worker"]
    so["spec"]["triggers"][0]["metadataa"] = {}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(so, CRD_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")])


# Metadata the redis-streams scaler reads (kedacore/keda pkg/scalers/redis_streams_scaler.go, redisStreamsMetadata
# and redisConnectionInfo; the docs page keda.sh/docs/latest/scalers/redis-streams lists the same).
REDIS_STREAMS_FIELDS = {"address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv", "username",
                        "usernameFromEnv", "passwordFromEnv", "stream", "consumerGroup", "pendingEntriesCount",
                        "streamLength", "lagCount", "activationLagCount", "databaseIndex", "enableTLS", "unsafeSsl"}
PROMETHEUS_FIELDS = {"serverAddress", "query", "threshold", "activationThreshold", "namespace", "queryParameters",
                     "ignoreNullValues", "unsafeSsl", "customHeaders", "timeout"}


def worker_triggers(docs) -> dict[str, dict]:
    so = by_kind(docs, "ScaledObject")[f"{FULL}-worker"]
    return {t["name"]: t for t in so["spec"]["triggers"]}


def test_worker_scaler_reads_the_service_queue(rendered):
    name, docs = rendered
    if name == "autoscaling-off":
        assert "ScaledObject" not in {d["kind"] for d in docs}
        return
    s = Settings(_env_file=None)
    triggers = worker_triggers(docs)
    assert set(triggers) == {"lag", "pending"}
    for trigger in triggers.values():
        assert trigger["type"] == "redis-streams"
        meta = trigger["metadata"]
        assert set(meta) <= REDIS_STREAMS_FIELDS, set(meta) - REDIS_STREAMS_FIELDS
        assert (meta["stream"], meta["consumerGroup"]) == (s.queue_stream, s.queue_group)
        assert all(isinstance(v, str) for v in meta.values())  # KEDA's metadata is map[string]string
    # the scaler ignores pendingEntriesCount once lagCount is set: they must sit in separate triggers
    assert "lagCount" in triggers["lag"]["metadata"] and "pendingEntriesCount" not in triggers["lag"]["metadata"]
    assert "pendingEntriesCount" in triggers["pending"]["metadata"] and "lagCount" not in triggers["pending"]["metadata"]
    for so in by_kind(docs, "ScaledObject").values():
        for trigger in so["spec"]["triggers"]:
            if trigger["type"] == "prometheus":
                assert set(trigger["metadata"]) <= PROMETHEUS_FIELDS
                assert "nv_inference_queue_duration_us" in trigger["metadata"]["query"]


def test_values_queue_names_equal_the_settings_defaults():
    s = Settings(_env_file=None)
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart_values["queue"] == {"stream": s.queue_stream, "group": s.queue_group}


SERVICE_COMPONENTS = ("-api", "-worker", "-storage-lifecycle")
TRITON_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}  # Triton's S3 store reads these
COMPILE_CACHE = {"name": "TORCHINDUCTOR_CACHE_DIR", "value": "/compile-cache"}  # torch.compile's, on a shared claim


def test_every_env_var_is_a_settings_field(rendered):
    _name, docs = rendered
    service_fields = {f"RESTYLE_{f.upper()}" for f in Settings.model_fields}
    model_fields = {f"RESTYLE_{f.upper()}" for f in ModelSettings.model_fields}
    config = by_kind(docs, "ConfigMap")[f"{FULL}-service"]
    assert set(config["data"]) <= service_fields, set(config["data"]) - service_fields
    for workload, spec in pod_specs(docs).items():
        for c in containers(spec):
            names = {e["name"] for e in c.get("env", [])}
            refs = {r["configMapRef"]["name"] for r in c.get("envFrom", [])}
            if workload.endswith(SERVICE_COMPONENTS):
                assert names <= service_fields, (workload, names - service_fields)
                assert refs == {f"{FULL}-service"}
            elif workload.endswith(("-triton", "-redis")) or "-build-" in workload:
                restyle = {n for n in names if n.startswith("RESTYLE_")}
                assert restyle <= model_fields, (workload, restyle - model_fields)
                assert names - restyle <= TRITON_ENV | {"HOME", COMPILE_CACHE["name"]}, (workload, names - restyle)
                assert not refs
            else:
                pytest.fail(f"unexpected workload {workload}")


def test_settings_outside_restyle_are_refused():
    with pytest.raises(helm_python.HelmError, match="only RESTYLE_"):
        render(_merge(BASE, {"settings": {"REDIS_URL": "x"}}))


def test_secrets_never_in_configmaps(rendered):
    _name, docs = rendered
    secret_fields = {f"RESTYLE_{f.upper()}" for f, info in Settings.model_fields.items()
                     if "SecretStr" in str(info.annotation)} | {"RESTYLE_REDIS_URL", "RESTYLE_API_KEYS"}
    for cm in by_kind(docs, "ConfigMap").values():
        assert not set(cm["data"]) & secret_fields
        text = yaml.safe_dump(cm)
        assert not [v for v in SECRET_VALUES if v in text]
    for workload, spec in pod_specs(docs).items():
        for c in containers(spec):
            for env in c.get("env", []):
                if env["name"] in secret_fields | {"AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"}:
                    assert "secretKeyRef" in env["valueFrom"], (workload, env["name"])


def test_every_container_has_requests_and_limits_and_runs_unprivileged(rendered):
    _name, docs = rendered
    writable = {"triton", "build"}  # torch/diffusers caches under $HOME; see the templates
    for workload, spec in pod_specs(docs).items():
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
        assert spec["automountServiceAccountToken"] is False
        for c in containers(spec):
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"cpu", "memory"} <= set(
                c["resources"]["limits"]), (workload, c["name"])
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
            assert sc["readOnlyRootFilesystem"] is (c["name"] not in writable), (workload, c["name"])


def test_triton_pod(rendered):
    name, docs = rendered
    deploy = by_kind(docs, "Deployment")[f"{FULL}-triton"]
    spec = deploy["spec"]["template"]["spec"]
    triton = next(c for c in spec["containers"] if c["name"] == "triton")
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] and spec["tolerations"]
    assert triton["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in triton["volumeMounts"]
    repo = next(a for a in triton["command"] if a.startswith("--model-repository="))
    env = {e["name"] for e in triton.get("env", [])}
    shared_cache = COMPILE_CACHE in triton.get("env", [])
    assert shared_cache is (name == "existing-secrets-prometheus-adapter")
    if shared_cache:  # every pod compiles into, and reads from, the one claim
        assert {"name": "compile-cache", "mountPath": "/compile-cache"} in triton["volumeMounts"]
        assert {"name": "compile-cache", "persistentVolumeClaim": {"claimName": "restyle-compile-cache"}} in spec["volumes"]
    else:
        assert not [m for m in triton["volumeMounts"] if m["name"] == "compile-cache"]
    if "s3" in name:
        assert repo == "--model-repository=s3://https://acct.r2.cloudflarestorage.com:443/restyle-models/model_repository"
        assert TRITON_ENV <= env
    else:
        assert repo == "--model-repository=/artifacts/model_repository" and env <= {COMPILE_CACHE["name"]}
    builds = [j for j in by_kind(docs, "Job").values()]
    if name in ("external-redis-volume", "autoscaling-off"):
        (build,) = builds
        script = build["spec"]["template"]["spec"]["containers"][0]["command"][-1]
        assert "restyle models build --profile t4 --weights /weights" in script
    else:
        assert not builds
    service = by_kind(docs, "Service")[f"{FULL}-triton"]
    assert {p["name"] for p in service["spec"]["ports"]} == {"grpc", "metrics"}  # HTTP not exposed
    scalers = [d for d in docs if d["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")
               and d["metadata"]["name"] == f"{FULL}-triton"]
    if "keda" in name or "adapter" in name:
        (scaler,) = scalers
        if scaler["kind"] == "HorizontalPodAutoscaler":
            assert scaler["apiVersion"] == "autoscaling/v2"
    else:
        assert not scalers


def test_worker_pod(rendered):
    _name, docs = rendered
    spec = by_kind(docs, "Deployment")[f"{FULL}-worker"]["spec"]["template"]["spec"]
    # SIGTERM lets the current job finish: the grace period covers the longest pipeline call
    assert spec["terminationGracePeriodSeconds"] > Settings(_env_file=None).triton_timeout_s
    assert spec["containers"][0]["args"] == ["restyle", "worker"]


def test_api_pod(rendered):
    name, docs = rendered
    c = by_kind(docs, "Deployment")[f"{FULL}-api"]["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert f"{FULL}-api" in by_kind(docs, "PodDisruptionBudget")
    hpa = by_kind(docs, "HorizontalPodAutoscaler").get(f"{FULL}-api")
    assert (hpa is None) == (name == "autoscaling-off")
    if hpa:
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def _peers(policy) -> list[tuple[str | None, str | None, set]]:
    """(component, namespace, ports) of each allowed peer."""
    out = []
    for rule in policy["spec"].get("ingress", []):
        ports = {p["port"] for p in rule.get("ports", [])}
        for peer in rule.get("from", [{}]):
            component = peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
            namespace = peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
            out.append((component, namespace, ports))
    return out


def test_network_policies(rendered):
    name, docs = rendered
    policies = by_kind(docs, "NetworkPolicy")
    if name == "autoscaling-off":
        assert not policies
        return
    # only the workers reach Triton's gRPC port (and the API's readiness check, when asked); nobody its HTTP port
    grpc = [("worker", None, {"grpc"})] + ([("api", None, {"grpc"})] if "in-chart-redis" in name else [])
    assert _peers(policies[f"{FULL}-triton"]) == [*grpc, (None, "monitoring", {"metrics"})]
    if "in-chart-redis" in name:
        assert sorted(_peers(policies[f"{FULL}-redis"]), key=str) == sorted(
            [("api", None, {"redis"}), ("worker", None, {"redis"}), (None, "keda", {"redis"})], key=str)
    else:
        assert f"{FULL}-redis" not in policies
    # every pod of the chart is selected by some policy (so what is not allowed is refused)
    components = {spec_labels["app.kubernetes.io/component"] for spec_labels in (
        (d["spec"]["template"] if d["kind"] != "CronJob" else d["spec"]["jobTemplate"]["spec"]["template"])
        ["metadata"]["labels"] for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob"))}
    covered = set()
    for policy in policies.values():
        sel = policy["spec"]["podSelector"]
        covered.update([sel["matchLabels"]["app.kubernetes.io/component"]] if "matchLabels" in sel
                       else sel["matchExpressions"][1]["values"])
    assert components <= covered


def test_in_chart_redis_keeps_an_append_only_file():
    docs = render(values("in-chart-redis-s3-keda"))
    sts = by_kind(docs, "StatefulSet")[f"{FULL}-redis"]
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    conf = by_kind(docs, "Secret")[f"{FULL}-redis"]["stringData"]["redis.conf"]
    assert "appendonly yes" in conf and "dir /data" in conf
