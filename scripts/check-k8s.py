#!/usr/bin/env python3
"""Checks the Kubernetes manifests in k8s/ with real schemas and with the rules the
deployment promises. Exits non-zero with one line per problem.

- Built-in kinds against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: an
  unknown field is an error).
- KEDA and Prometheus Operator resources against their CRDs' schemas (kubernetes-models on
  npm, through scripts/check-k8s-crs.mjs).
- ACK (SQS, CloudWatch, EC2) and Security Groups for Pods resources: no published schema is
  available offline, so their required fields are checked here.
- The promises: restricted Pod Security on every pod; probes and resources on every
  container of a Deployment; a PodDisruptionBudget, a NetworkPolicy and a ServiceAccount
  with its own IAM role for every role; only the signer's role may read secrets; default-deny
  network policies; the alerts the runbook needs, each with a console link; generated files
  current; the ConfigMap's configuration accepted by withdrawd itself; KEDA, ACK and the
  configuration naming the same queues.

Usage: check-k8s.py WITHDRAWD_BINARY [K8S_DIR]
"""
import json
import pathlib
import subprocess
import sys
import tempfile
import tomllib

import kubernetes_validate
import yaml

root = pathlib.Path(__file__).resolve().parent.parent
k8s = pathlib.Path(sys.argv[2]) if len(sys.argv) > 2 else root / "k8s"
tools = root / ".tools"
withdrawd = sys.argv[1]
problems = []


def problem(msg):
    problems.append(msg)


kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
docs = []
for res in kustomization["resources"]:
    for d in yaml.safe_load_all((k8s / res).read_text()):
        if d:
            docs.append((res, d))
listed = {str(p.relative_to(k8s)) for p in k8s.rglob("*.yaml")} - {"kustomization.yaml"}
for unlisted in sorted(listed - set(kustomization["resources"])):
    problem(f"{unlisted} is not in kustomization.yaml")


def name(d):
    return f"{d['kind']}/{d['metadata']['name']}"


# --- Schemas -------------------------------------------------------------------------------
builtin_groups = {"v1", "apps/v1", "batch/v1", "policy/v1", "networking.k8s.io/v1"}
crd_groups = {"keda.sh/v1alpha1", "monitoring.coreos.com/v1", "monitoring.coreos.com/v1alpha1"}
ack_required = {
    ("sqs.services.k8s.aws/v1alpha1", "Queue"): ["queueName"],
    ("cloudwatch.services.k8s.aws/v1alpha1", "MetricAlarm"): [
        "name", "namespace", "metricName", "statistic", "period", "evaluationPeriods", "threshold",
        "comparisonOperator", "dimensions",
    ],
    ("ec2.services.k8s.aws/v1alpha1", "SecurityGroup"): ["name", "description", "vpcID"],
    ("vpcresources.k8s.aws/v1beta1", "SecurityGroupPolicy"): ["podSelector", "securityGroups"],
}
crs = []
for src, d in docs:
    api = d["apiVersion"]
    if api in builtin_groups:
        try:
            kubernetes_validate.validate(d, kubernetes_validate.latest_version(), strict=True)
        except kubernetes_validate.ValidationError as e:
            problem(f"{src}: {name(d)}: {e.message} at {'/'.join(map(str, e.path))}")
    elif api in crd_groups:
        crs.append(d)
    elif (api, d["kind"]) in ack_required:
        for field in ack_required[(api, d["kind"])]:
            if field not in d.get("spec", {}):
                problem(f"{src}: {name(d)}: spec.{field} is required")
    else:
        problem(f"{src}: {name(d)}: no schema known for {api}")
out = subprocess.run(
    ["node", str(root / "scripts/check-k8s-crs.mjs"), str(tools)], input=json.dumps(crs), capture_output=True, text=True
)
for line in out.stdout.splitlines():
    if not line.startswith("OK "):
        problem(f"custom resource {line}")
if out.returncode != 0 and not problems:
    problem(f"custom resource check failed: {out.stderr.strip()}")
checked_crs = sum(1 for l in out.stdout.splitlines() if l.startswith("OK "))
if checked_crs != len(crs):
    problem(f"{len(crs)} custom resources, {checked_crs} validated")

by_kind = {}
for _, d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
roles = ["intake", "admin", "signer", "sender", "tracker"]
deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
if sorted(deployments) != sorted(f"withdrawd-{r}" for r in roles):
    problem(f"Deployments {sorted(deployments)}: want one per role")


# --- Pod security --------------------------------------------------------------------------
def pod_specs():
    for d in by_kind.get("Deployment", []) + by_kind.get("Job", []):
        yield name(d), d["spec"]["template"]["spec"]
    for d in by_kind.get("CronJob", []):
        yield name(d), d["spec"]["jobTemplate"]["spec"]["template"]["spec"]


for n, spec in pod_specs():
    psc = spec.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problem(f"{n}: pod must run as non-root with seccomp RuntimeDefault")
    if psc.get("runAsUser") != 65532:
        problem(f"{n}: pod must run as UID 65532 (the image's user)")
    if spec.get("automountServiceAccountToken") is not False:
        problem(f"{n}: no Kubernetes API token is needed; automountServiceAccountToken must be false")
    for c in spec["containers"]:
        sc = c.get("securityContext", {})
        ok = (
            sc.get("allowPrivilegeEscalation") is False
            and sc.get("readOnlyRootFilesystem") is True
            and sc.get("runAsNonRoot") is True
            and sc.get("capabilities", {}).get("drop") == ["ALL"]
            and not sc.get("capabilities", {}).get("add")
            and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
            and not sc.get("privileged")
        )
        if not ok:
            problem(f"{n}: container {c['name']} breaks the restricted Pod Security Standard")
        if "limits" not in c.get("resources", {}) or "requests" not in c.get("resources", {}):
            problem(f"{n}: container {c['name']} needs resource requests and limits")
        if n.startswith("Deployment/"):
            for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
                if c.get(probe, {}).get("httpGet", {}).get("path") != path:
                    problem(f"{n}: {probe} must GET {path}")
ns = by_kind.get("Namespace", [{}])[0]
if ns.get("metadata", {}).get("labels", {}).get("pod-security.kubernetes.io/enforce") != "restricted":
    problem("the namespace must enforce the restricted Pod Security Standard")


# --- Per role: PDB, NetworkPolicy, ServiceAccount + IAM ---------------------------------------
def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


for dep_name, dep in deployments.items():
    labels = dep["spec"]["template"]["metadata"]["labels"]
    if not any(selects(p["spec"]["selector"], labels) for p in by_kind.get("PodDisruptionBudget", [])):
        problem(f"{dep_name}: no PodDisruptionBudget")
    if not any(p["spec"]["podSelector"].get("matchLabels") and selects(p["spec"]["podSelector"], labels) for p in by_kind.get("NetworkPolicy", [])):
        problem(f"{dep_name}: no NetworkPolicy of its own")
    sa_name = dep["spec"]["template"]["spec"].get("serviceAccountName")
    sa = next((s for s in by_kind.get("ServiceAccount", []) if s["metadata"]["name"] == sa_name), None)
    if sa is None:
        problem(f"{dep_name}: ServiceAccount {sa_name} missing")
        continue
    role_arn = sa["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn", "")
    role = labels["app.kubernetes.io/component"]
    if not role_arn.endswith(f":role/withdraw-{role}"):
        problem(f"{dep_name}: ServiceAccount must carry its own IAM role (withdraw-{role}), has {role_arn!r}")
    policy_file = k8s / "iam" / f"{role}.json"
    if not policy_file.exists():
        problem(f"{dep_name}: no IAM policy {policy_file.relative_to(root)}")
        continue
    policy = json.loads(policy_file.read_text())
    actions = [a for s in policy["Statement"] for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]
    if any(a.startswith(("secretsmanager:", "kms:")) for a in actions) != (role == "signer"):
        problem(f"{policy_file.name}: only the signer's role may read secrets (actions {actions})")
    if any("*" == a or a.endswith(":*") for a in actions):
        problem(f"{policy_file.name}: wildcard action")
deny = [p for p in by_kind.get("NetworkPolicy", []) if p["spec"]["podSelector"] == {}]
if not deny or set(deny[0]["spec"].get("policyTypes", [])) != {"Ingress", "Egress"} or "ingress" in deny[0]["spec"] or "egress" in deny[0]["spec"]:
    problem("no default-deny NetworkPolicy (empty podSelector, Ingress and Egress, no rules)")
sgp = by_kind.get("SecurityGroupPolicy", [])
if not any(selects(p["spec"]["podSelector"], {"app.kubernetes.io/name": "withdrawd", "app.kubernetes.io/component": "signer"}) for p in sgp):
    problem("no SecurityGroupPolicy for the signer's pods")

# --- Monitoring ------------------------------------------------------------------------------
alerts = {}
for r in by_kind.get("PrometheusRule", []):
    for g in r["spec"]["groups"]:
        for rule in g["rules"]:
            if "alert" in rule:
                alerts[rule["alert"]] = rule
for needed in [
    "WithdrawInvalidDLQNotEmpty", "WithdrawTxDLQNotEmpty", "WithdrawQueueBacklogOld", "WithdrawTransactionStuck",
    "WithdrawNonceGap", "WithdrawHotWalletLow", "WithdrawEndpointDown", "WithdrawNoProgress",
]:
    if needed not in alerts:
        problem(f"PrometheusRule lacks {needed}")
for a, rule in alerts.items():
    if not rule.get("annotations", {}).get("console", "").startswith("withdraw-console --goto "):
        problem(f"alert {a} has no console annotation")
hooks = [w["url"] for c in by_kind.get("AlertmanagerConfig", []) for r in c["spec"]["receivers"] for w in r.get("webhookConfigs", [])]
if not any(u.endswith("/admin/v1/alerts/alertmanager") for u in hooks):
    problem("no Alertmanager route to the admin API's webhook")
with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, str(root / "scripts/k8s-generate.py"), tmp], check=True)
    for f in pathlib.Path(tmp).iterdir():
        if f.read_text() != (k8s / "generated" / f.name).read_text():
            problem(f"k8s/generated/{f.name} is stale: run scripts/k8s-generate.py")

# --- Configuration, queues ---------------------------------------------------------------------
toml_text = next(d for d in by_kind["ConfigMap"] if d["metadata"]["name"] == "withdrawd-config")["data"]["withdrawd.toml"]
with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
    f.write(toml_text)
    f.flush()
    out = subprocess.run([withdrawd, "--log-format", "json", "--config", f.name, "check-config"], capture_output=True, text=True)
    if out.returncode != 0:
        problem(f"withdrawd refuses the ConfigMap's configuration: {out.stderr.strip()}")
cfg = tomllib.loads(toml_text)
urls = cfg["queues"]["sqs"]
for so in by_kind.get("ScaledObject", []):
    if so["spec"]["scaleTargetRef"]["name"] not in deployments:
        problem(f"{name(so)} scales a Deployment that does not exist")
    for t in so["spec"]["triggers"]:
        if t["metadata"]["queueURL"] not in (urls["requests_url"], urls["signed_url"]):
            problem(f"{name(so)} watches {t['metadata']['queueURL']}, not a work queue of the configuration")
queues = {q["spec"]["queueName"]: q["spec"] for q in by_kind.get("Queue", [])}
for key in ["requests_url", "signed_url", "invalid_dlq_url", "tx_dlq_url"]:
    if urls[key].rsplit("/", 1)[-1] not in queues:
        problem(f"queue {urls[key]} of the configuration has no ACK Queue")
for work, dlq in [("withdraw-requests", "withdraw-invalid-dlq"), ("withdraw-signed", "withdraw-tx-dlq")]:
    policy = json.loads(queues.get(work, {}).get("redrivePolicy", "{}"))
    if not policy.get("deadLetterTargetArn", "").endswith(":" + dlq) or policy.get("maxReceiveCount") != cfg["queues"]["max_receives"]:
        problem(f"{work} must redrive to {dlq} after queues.max_receives receives, has {policy}")
alarmed = {dim["value"] for a in by_kind.get("MetricAlarm", []) for dim in a["spec"]["dimensions"]}
for dlq in ["withdraw-invalid-dlq", "withdraw-tx-dlq"]:
    if dlq not in alarmed:
        problem(f"no CloudWatch alarm on {dlq}")

for p in problems:
    print(f"k8s: {p}")
print(f"k8s: {len(docs)} resources checked ({len(crs)} against CRD schemas), {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
