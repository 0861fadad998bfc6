#!/usr/bin/env python3
"""Checks the Kubernetes manifests in k8s/ with real schemas and with the rules the
deployment promises. Exits non-zero with one line per problem.

- Built-in kinds against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: an
  unknown field is an error).
- KEDA and Prometheus Operator resources against their CRD schemas (kubernetes-models on
  npm, through scripts/check-k8s-crs.mjs).
- ACK (SQS, CloudWatch, EC2) and Security Groups for Pods resources: no published schema is
  available offline, so their required and known fields are checked here.
- The promises: restricted Pod Security on every pod; probes and resources on every
  container of a Deployment; a PodDisruptionBudget, a NetworkPolicy and a ServiceAccount
  with its own IAM role for every role; only the signer's role may read secrets; default-deny
  network policies; the alerts the runbook needs, each with a console link; generated files
  current; the ConfigMap's configuration accepted by withdrawd itself; KEDA, ACK and the
  configuration naming the same queues.
- What a real EKS cluster needs (issue 19): the signer's security group (probes in, DNS
  over UDP and TCP, the configuration's RPC endpoints out, its id linked to the ACK
  resource); alert rules that keep `namespace`; CloudWatch alarms where Prometheus cannot
  see (queue age on SQS, what reaches a DLQ); budgets that select only one Deployment's
  pods; one tracker; readiness timeouts above the dependency probe; key ARNs, trust
  policies and exact queue ARNs in IAM; a fixed signer count and no `replicas:` where KEDA
  scales; a migrate Job per release with a deadline and its own database user; generated
  (hashed) configuration; health, probes and scraping on the health port only; the signer's
  egress only through the egress proxy; the console's egress; spreading over nodes and
  zones; images by digest.

Usage: check-k8s.py WITHDRAWD_BINARY [K8S_DIR]
"""
import ipaddress
import json
import pathlib
import re
import shutil
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
patch_files = [p["path"] for p in kustomization.get("patches", []) if "path" in p]
docs = []
for res in kustomization["resources"] + patch_files:
    for d in yaml.safe_load_all((k8s / res).read_text()):
        if d:
            docs.append((res, d))
listed = {str(p.relative_to(k8s)) for p in k8s.rglob("*.yaml")} - {"kustomization.yaml"}
for unlisted in sorted(listed - set(kustomization["resources"]) - set(patch_files)):
    problem(f"{unlisted} is not in kustomization.yaml")


def name(d):
    return f"{d['kind']}/{d['metadata']['name']}"


# --- Schemas -------------------------------------------------------------------------------
builtin_groups = {"v1", "apps/v1", "batch/v1", "policy/v1", "networking.k8s.io/v1"}
crd_groups = {"keda.sh/v1alpha1", "monitoring.coreos.com/v1", "monitoring.coreos.com/v1alpha1"}
ack_required = {
    ("sqs.services.k8s.aws/v1alpha1", "Queue"): ["queueName"],
    # A single metric (namespace, metricName, ...) or metric math (metrics), checked below.
    ("cloudwatch.services.k8s.aws/v1alpha1", "MetricAlarm"): ["name", "evaluationPeriods", "threshold", "comparisonOperator"],
    ("ec2.services.k8s.aws/v1alpha1", "SecurityGroup"): ["name", "description", "vpcID"],
    ("vpcresources.k8s.aws/v1beta1", "SecurityGroupPolicy"): ["podSelector", "securityGroups"],
}
# The spec fields of the controllers' CRDs (ACK generates the names: OKActions is oKActions);
# an unknown field would be pruned by the API server and the setting silently lost.
ack_known = {
    ("sqs.services.k8s.aws/v1alpha1", "Queue"): {
        "contentBasedDeduplication", "deduplicationScope", "delaySeconds", "fifoQueue", "fifoThroughputLimit",
        "kmsDataKeyReusePeriodSeconds", "kmsMasterKeyID", "kmsMasterKeyRef", "maximumMessageSize",
        "messageRetentionPeriod", "policy", "policyRef", "queueName", "receiveMessageWaitTimeSeconds",
        "redriveAllowPolicy", "redrivePolicy", "sqsManagedSSEEnabled", "tags", "visibilityTimeout",
    },
    ("cloudwatch.services.k8s.aws/v1alpha1", "MetricAlarm"): {
        "actionsEnabled", "alarmActions", "alarmDescription", "comparisonOperator", "datapointsToAlarm", "dimensions",
        "evaluateLowSampleCountPercentile", "evaluationCriteria", "evaluationInterval", "evaluationPeriods",
        "evaluationWindow", "extendedStatistic", "insufficientDataActions", "metricName", "metrics", "name",
        "namespace", "oKActions", "period", "statistic", "tags", "threshold", "thresholdMetricID",
        "treatMissingData", "unit",
    },
    ("ec2.services.k8s.aws/v1alpha1", "SecurityGroup"): {
        "description", "egressRules", "ingressRules", "name", "tags", "vpcID", "vpcRef",
    },
    ("vpcresources.k8s.aws/v1beta1", "SecurityGroupPolicy"): {"podSelector", "serviceAccountSelector", "securityGroups"},
}
sg_rule_known = {"fromPort", "ipProtocol", "ipRanges", "ipv6Ranges", "prefixListIDs", "toPort", "userIDGroupPairs"}
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
        spec = d.get("spec", {})
        for field in ack_required[(api, d["kind"])]:
            if field not in spec:
                problem(f"{src}: {name(d)}: spec.{field} is required")
        for field in sorted(set(spec) - ack_known[(api, d["kind"])]):
            problem(f"{src}: {name(d)}: spec.{field} is not a field of the {d['kind']} CRD")
        if d["kind"] == "MetricAlarm":
            single = ["namespace", "metricName", "statistic", "period", "dimensions"]
            if "metrics" in spec:
                if any(f in spec for f in single):
                    problem(f"{src}: {name(d)}: metric math (spec.metrics) excludes {single}")
                if sum(1 for m in spec["metrics"] if m.get("returnData")) != 1:
                    problem(f"{src}: {name(d)}: exactly one of spec.metrics must have returnData: true")
            else:
                for field in single:
                    if field not in spec:
                        problem(f"{src}: {name(d)}: spec.{field} is required (or spec.metrics)")
        if d["kind"] == "SecurityGroup":
            for rule in spec.get("ingressRules", []) + spec.get("egressRules", []):
                for field in sorted(set(rule) - sg_rule_known):
                    problem(f"{src}: {name(d)}: rule field {field} is not a field of the SecurityGroup CRD")
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
for d in by_kind["ConfigMap"]:
    if "withdrawd.toml" not in d.get("data", {}):
        continue
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write(d["data"]["withdrawd.toml"])
        f.flush()
        out = subprocess.run([withdrawd, "--log-format", "json", "--config", f.name, "check-config"], capture_output=True, text=True)
        if out.returncode != 0:
            problem(f"withdrawd refuses {name(d)}'s configuration: {out.stderr.strip()}")
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


def alarm_metrics(alarm):
    """(metricName, QueueName) pairs an alarm reads, single metric or metric math."""
    spec = alarm["spec"]
    if "metrics" in spec:
        stats = [m["metricStat"]["metric"] for m in spec["metrics"] if "metricStat" in m]
    else:
        stats = [spec]
    return [(m.get("metricName"), dim["value"]) for m in stats for dim in m.get("dimensions", []) if dim["name"] == "QueueName"]


alarmed = {}
for a in by_kind.get("MetricAlarm", []):
    for metric, queue in alarm_metrics(a):
        alarmed.setdefault(queue, set()).add(metric)
for dlq in ["withdraw-invalid-dlq", "withdraw-tx-dlq"]:
    if dlq not in alarmed:
        problem(f"no CloudWatch alarm on {dlq}")
    # The tracker's sweep receives and deletes every DLQ message within a pass: visible
    # messages stay near zero while withdrawals are dead-lettered. What arrives is counted
    # by NumberOfMessagesReceived (the sweep's receives) or NumberOfMessagesSent.
    elif not alarmed[dlq] & {"NumberOfMessagesReceived", "NumberOfMessagesSent"}:
        problem(
            f"the CloudWatch alarm on {dlq} watches {sorted(alarmed[dlq])} only: the DLQ sweep keeps visible messages near "
            "zero; count what arrives (NumberOfMessagesReceived or NumberOfMessagesSent)"
        )
for work in ["withdraw-requests", "withdraw-signed"]:
    if "ApproximateAgeOfOldestMessage" not in alarmed.get(work, set()):
        problem(
            f"no CloudWatch alarm on the ApproximateAgeOfOldestMessage of {work}: on SQS withdrawd exports no oldest age, "
            "so WithdrawQueueBacklogOld never fires"
        )

# --- What a real EKS cluster needs ------------------------------------------------------------
ns_name = kustomization.get("namespace", "withdraw")
DEPENDENCY_PROBE_SECS = 3  # each /readyz dependency check's deadline (withdrawd's background probe)


def port_of(listen):
    return int(str(listen).rsplit(":", 1)[1])


def labels_of(d):
    return d["metadata"].get("labels", {})


def phase(d):
    return labels_of(d).get("withdrawd/install-phase")


def env_secret(container, var):
    for e in container.get("env", []):
        if e["name"] == var:
            return e.get("valueFrom", {}).get("secretKeyRef", {}).get("name")
    return None


health_port = port_of(cfg["health_listen"]) if "health_listen" in cfg else None
if health_port is None:
    problem("the configuration has no health_listen: every role serves /healthz, /readyz and /metrics only there")
client_ports = {port_of(cfg[r]["listen"]) for r in ("intake", "admin") if "listen" in cfg.get(r, {})}

# The configuration's RPC endpoints: in the cluster (host under .svc), or outside it (a
# provider; a URL given as a secret is one, its key is in it).
endpoints = []
for chain in cfg.get("chains", []):
    given = list(chain.get("endpoints", []))
    if "rpc_url" in chain:
        given.append({"name": f"chain {chain.get('chain_id')} rpc_url", "url": chain["rpc_url"]})
    for e in given:
        url = e.get("url")
        if isinstance(url, str):
            m = re.match(r"^([a-z]+)://([^/:?#]+)(?::(\d+))?", url)
            if not m:
                problem(f"chains.endpoints {e['name']}: {url!r} is not a URL")
                continue
            scheme, host, port = m.group(1), m.group(2), m.group(3)
            port = int(port) if port else (443 if scheme in ("https", "wss") else 80)
            inside = host.endswith((".svc", ".svc.cluster.local", ".cluster.local"))
            endpoints.append({"name": e["name"], "inside": inside, "port": port, "env": None})
            if not inside:
                problem(f"chains.endpoints {e['name']}: an RPC URL outside the cluster is written in the ConfigMap: its API key belongs in a secret ({{ env }} or {{ file }})")
        else:
            endpoints.append({"name": e["name"], "inside": False, "port": 443, "env": (url or {}).get("env")})

# Health, probes and scraping on the health port only; readiness above the dependency probe.
for dep_name, dep in deployments.items():
    spec = dep["spec"]["template"]["spec"]
    for c in spec["containers"]:
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        if health_port is not None and ports.get("health") != health_port:
            problem(f"Deployment/{dep_name}: no containerPort named health on {health_port} (health_listen): /healthz, /readyz and /metrics are served only there")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if probe in c:
                port = c[probe].get("httpGet", {}).get("port")
                if port not in ("health", health_port):
                    problem(f"Deployment/{dep_name}: {probe} must use the health port ({health_port}), not {port!r}: the client ports serve no health")
        timeout = c.get("readinessProbe", {}).get("timeoutSeconds", 1)
        if timeout <= DEPENDENCY_PROBE_SECS:
            problem(f"Deployment/{dep_name}: readinessProbe timeoutSeconds {timeout} must be above the dependency probe's {DEPENDENCY_PROBE_SECS} s")
        for ep in endpoints:
            if ep["env"] and not any(e["name"] == ep["env"] for e in c.get("env", [])):
                problem(f"Deployment/{dep_name}: the configuration reads {ep['env']} (chain endpoint {ep['name']}), which its container does not set")
    keys = {t["topologyKey"] for t in spec.get("topologySpreadConstraints", [])}
    for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname"):
        if key not in keys:
            problem(f"Deployment/{dep_name}: no topologySpreadConstraint over {key}: spread over nodes as well as zones")
for mon in by_kind.get("PodMonitor", []) + by_kind.get("ServiceMonitor", []):
    for ep in mon["spec"].get("podMetricsEndpoints", []) + mon["spec"].get("endpoints", []):
        if ep.get("port") != "health":
            problem(f"{name(mon)} scrapes port {ep.get('port')!r}: /metrics is served only on the health port")
netpols = by_kind.get("NetworkPolicy", [])
for np in netpols:
    for rule in np["spec"].get("ingress", []):
        from_prometheus = any(peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == "prometheus" for peer in rule.get("from", []))
        for p in rule.get("ports", []):
            if from_prometheus and p.get("port") in client_ports:
                problem(f"{name(np)} lets Prometheus reach client port {p['port']}: scrape the health port {health_port}")

# The configuration is generated: its name carries a hash, so an edit rolls every pod.
gens = [g for g in kustomization.get("configMapGenerator", []) if g.get("name") == "withdrawd-config"]
no_hash = kustomization.get("generatorOptions", {}).get("disableNameSuffixHash") or any(g.get("options", {}).get("disableNameSuffixHash") for g in gens)
config_src = next((src for src, d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "withdrawd-config"), None)
if not gens or no_hash or config_src in kustomization["resources"]:
    problem("ConfigMap/withdrawd-config is not generated with a hash suffix: config edits would not roll pods (configMapGenerator, and config.yaml under patches)")

# Images by digest.
digest = re.compile(r"^sha256:[0-9a-f]{64}$")
pinned = {i["name"] for i in kustomization.get("images", []) if digest.match(str(i.get("digest", "")))}
unpinned = set()
for n, spec in pod_specs():
    for c in spec["containers"]:
        image = c["image"]
        bare = image.split("@")[0]
        if ":" in bare.rsplit("/", 1)[-1]:
            bare = bare.rsplit(":", 1)[0]
        if "@sha256:" not in image and bare not in pinned:
            unpinned.add(bare)
for image in sorted(unpinned):
    problem(f"image {image} is not pinned by digest (kustomization.yaml images: digest: sha256:...)")

# Budgets: one Deployment's pods each, never a Job's; no pod under two.
workloads = [(name(d), d["spec"]["template"]["metadata"]["labels"]) for d in by_kind.get("Deployment", []) + by_kind.get("Job", [])]
workloads += [(name(d), d["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]) for d in by_kind.get("CronJob", [])]
pdbs = by_kind.get("PodDisruptionBudget", [])
for pdb in pdbs:
    hits = [n for n, labels in workloads if selects(pdb["spec"]["selector"], labels)]
    jobs = [n for n in hits if not n.startswith("Deployment/")]
    if jobs:
        problem(f"{name(pdb)} also selects the pods of {', '.join(jobs)}: a budget over a Job's pods allows no eviction and blocks node drains")
    if sum(1 for n in hits if n.startswith("Deployment/")) > 1:
        problem(f"{name(pdb)} selects the pods of {[n for n in hits if n.startswith('Deployment/')]}: one budget per Deployment")
for n, labels in workloads:
    if n.startswith("Deployment/") and sum(1 for pdb in pdbs if selects(pdb["spec"]["selector"], labels)) > 1:
        problem(f"{n}: its pods are under more than one PodDisruptionBudget, so none can be evicted")

# One tracker: replaced, not surged; nothing else runs one beside it.
tracker = deployments.get("withdrawd-tracker")
if tracker is not None:
    if tracker["spec"].get("strategy", {}).get("type") != "Recreate":
        problem("Deployment/withdrawd-tracker: strategy must be Recreate: a rolling update's surge runs two trackers at once")
    if tracker["spec"].get("replicas", 1) != 1:
        problem("Deployment/withdrawd-tracker: exactly one replica")
for n, spec in pod_specs():
    if n != "Deployment/withdrawd-tracker" and any("tracker" in c.get("args", []) for c in spec["containers"]):
        problem(f"{n} runs a tracker beside Deployment/withdrawd-tracker: two trackers at once (the Deployment's reconciles continuously)")

# Scaling: the signer at a fixed count; no `replicas:` where KEDA or an HPA owns it.
scaled = {so["spec"]["scaleTargetRef"]["name"]: name(so) for so in by_kind.get("ScaledObject", []) + by_kind.get("HorizontalPodAutoscaler", []) if "scaleTargetRef" in so["spec"]}
if "withdrawd-signer" in scaled:
    problem(f"{scaled['withdrawd-signer']} scales the signer on demand: a backlog grows when signing is paused, RPC is down or a wallet is short, and more key-holding pods add no throughput; keep a fixed count")
for dep_name, dep in deployments.items():
    if dep_name in scaled and "replicas" in dep["spec"]:
        problem(f"Deployment/{dep_name}: replicas: fights {scaled[dep_name]}, which owns the count (every apply would reset it)")
    if dep_name not in scaled and "replicas" not in dep["spec"]:
        problem(f"Deployment/{dep_name}: no replicas and nothing scales it")

# The migrate Job: per release, bounded, its own database user, applied before the roles.
tag = next((str(i.get("newTag")) for i in kustomization.get("images", []) if i["name"] == "withdrawd" and i.get("newTag")), None)
migrate_jobs = [j for j in by_kind.get("Job", []) if j["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "migrate"]
if not migrate_jobs:
    problem("no migrate Job")
role_db = {env_secret(c, "WITHDRAW_DATABASE_URL") for d in deployments.values() for c in d["spec"]["template"]["spec"]["containers"]}
for j in migrate_jobs:
    want = f"withdrawd-migrate-{tag.replace('.', '-')}" if tag else None
    if want and j["metadata"]["name"] != want:
        problem(f"{name(j)}: the migrate Job's name must carry the release ({want} for image tag {tag}): a Job's template cannot change, so the next release could not apply it")
    if not j["spec"].get("activeDeadlineSeconds"):
        problem(f"{name(j)}: no activeDeadlineSeconds: a hung migration would hold the release forever")
    generated = {g["name"] for g in gens}
    for v in j["spec"]["template"]["spec"].get("volumes", []):
        if v.get("configMap", {}).get("name") in generated:
            problem(f"{name(j)} mounts the generated ConfigMap/{v['configMap']['name']}: its name changes with every edit and a Job's template cannot, so the next apply would fail; give the Job a config of its own")
    job_db = {env_secret(c, "WITHDRAW_DATABASE_URL") for c in j["spec"]["template"]["spec"]["containers"]}
    if None in job_db or job_db & role_db:
        problem(f"{name(j)}: the migrate Job must connect as its own database user (a Secret no role uses; {sorted(map(str, job_db))} vs the roles' {sorted(map(str, role_db))}), so the roles' user cannot change the schema")
    if phase(j) != "migrate":
        problem(f"{name(j)}: label withdrawd/install-phase: migrate (RUNBOOK.md applies and waits for it before the roles)")
    sa = j["spec"]["template"]["spec"].get("serviceAccountName")
    needs = [d for d in by_kind.get("ServiceAccount", []) if d["metadata"]["name"] == sa]
    needs += [np for np in netpols if selects(np["spec"]["podSelector"], j["spec"]["template"]["metadata"]["labels"])]
    for d in needs:
        if phase(d) != "migrate":
            problem(f"{name(d)} is needed by {name(j)}: label it withdrawd/install-phase: migrate")
    for v in j["spec"]["template"]["spec"].get("volumes", []):
        cm = v.get("configMap", {}).get("name")
        for d in by_kind.get("ConfigMap", []):
            if d["metadata"]["name"] == cm and phase(d) != "migrate":
                problem(f"{name(d)} is needed by {name(j)}: label it withdrawd/install-phase: migrate")
# sslmode=verify-full needs RDS's CA bundle in the pod: the image carries only public roots.
for d in list(deployments.values()) + by_kind.get("Job", []):
    spec = d["spec"]["template"]["spec"]
    if any(env_secret(c, "WITHDRAW_DATABASE_URL") for c in spec["containers"]):
        mounted = {v["name"] for v in spec.get("volumes", []) if v.get("configMap", {}).get("name") == "withdrawd-rds-ca"}
        if not any(m.get("name") in mounted and m.get("mountPath") == "/etc/ssl/rds" for c in spec["containers"] for m in c.get("volumeMounts", [])):
            problem(f"{name(d)} connects to the database but does not mount ConfigMap/withdrawd-rds-ca at /etc/ssl/rds: sslmode=verify-full cannot find RDS's CA")
runbook = (root / "RUNBOOK.md").read_text() if (root / "RUNBOOK.md").exists() else ""
if "wait --for=condition=complete" not in runbook or "job/withdrawd-migrate-" not in runbook:
    problem("RUNBOOK.md does not order the migrate Job before the roles (kubectl wait --for=condition=complete job/withdrawd-migrate-<release>)")
for kind in ("Queue", "MetricAlarm", "SecurityGroup"):
    for d in by_kind.get(kind, []):
        if phase(d) != "aws":
            problem(f"{name(d)}: ACK resources are applied first: label withdrawd/install-phase: aws")

# The signer's security group (Security Groups for Pods, strict mode) and its policy.
def covers(rule, proto, port):
    if rule.get("ipProtocol") in ("-1", "all"):
        return True
    return rule.get("ipProtocol") == proto and rule.get("fromPort", 0) <= port <= rule.get("toPort", 65535)


def to_group(rule):
    return bool(rule.get("userIDGroupPairs"))


signer_sgs = [g for g in by_kind.get("SecurityGroup", []) if labels_of(g).get("app.kubernetes.io/component") == "signer"]
if not signer_sgs:
    problem("no ACK SecurityGroup for the signer's pods")
https_proxy = next((e.get("value", "") for c in deployments.get("withdrawd-signer", {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers", []) for e in c.get("env", []) if e["name"] == "HTTPS_PROXY"), "")
proxy_port = int(m.group(1)) if (m := re.search(r":(\d+)/?$", https_proxy)) else None
outside = [ep for ep in endpoints if not ep["inside"]]
if outside and not https_proxy:
    problem(f"Deployment/withdrawd-signer: the chain endpoints {[ep['name'] for ep in outside]} are outside the cluster, but no HTTPS_PROXY sends them to the egress proxy")
for g in signer_sgs:
    sp = g["spec"]
    ingress, egress = sp.get("ingressRules", []), sp.get("egressRules", [])
    if health_port is not None and not any(covers(r, "tcp", health_port) and to_group(r) for r in ingress):
        problem(f"{name(g)}: no ingress to the health port {health_port} from the nodes' security group: in strict mode kubelet's probes and Prometheus cannot reach the signer")
    for proto in ("udp", "tcp"):
        if not any(covers(r, proto, 53) and to_group(r) for r in egress):
            problem(f"{name(g)}: DNS needs {proto} 53 to CoreDNS's security group")
    for ep in endpoints:
        port = ep["port"] if ep["inside"] else proxy_port
        if port is not None and not any(covers(r, "tcp", port) and to_group(r) for r in egress):
            via = "" if ep["inside"] else " (through the egress proxy)"
            problem(f"{name(g)}: no egress to tcp {port} for the chain endpoint {ep['name']}{via}")
    for r in ingress + egress:
        for ipr in r.get("ipRanges", []):
            if not ipaddress.ip_network(ipr["cidrIP"]).is_private:
                problem(f"{name(g)}: a rule for {ipr['cidrIP']}: the signer's group admits only the VPC (the internet only through the egress proxy)")
local = {d["metadata"]["name"] for _, d in docs if d["kind"] == "ConfigMap" and d["metadata"].get("annotations", {}).get("config.kubernetes.io/local-config") == "true"}
for policy in sgp:
    linked = any(
        r.get("source", {}).get("kind") == "ConfigMap" and r["source"].get("name") in local
        and any(t.get("select", {}).get("kind") == "SecurityGroupPolicy" and t["select"].get("name") == policy["metadata"]["name"]
                and any(fp.startswith("spec.securityGroups.groupIds") for fp in t.get("fieldPaths", [])) for t in r.get("targets", []))
        for r in kustomization.get("replacements", [])
    )
    if not linked:
        problem(f"{name(policy)}: groupIds is a literal: set it from the ACK SecurityGroup's status.id (aws-ids.yaml and a kustomization replacement)")
    if phase(policy) != "migrate":
        problem(f"{name(policy)} applies only to pods created after it: label it withdrawd/install-phase: migrate so it precedes the signer's pods")

# The signer's NetworkPolicy: no route to the internet; the providers through the proxy.
signer_labels = deployments.get("withdrawd-signer", {}).get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
for np in netpols:
    if not (np["spec"]["podSelector"].get("matchLabels") and selects(np["spec"]["podSelector"], signer_labels)):
        continue
    to_proxy = False
    for rule in np["spec"].get("egress", []):
        if not rule.get("to"):
            problem(f"{name(np)} allows egress to anywhere: the key-holding pod reaches providers only through the egress proxy")
        for peer in rule.get("to", []):
            if "ipBlock" in peer and not ipaddress.ip_network(peer["ipBlock"]["cidr"]).is_private:
                problem(f"{name(np)} allows egress to {peer['ipBlock']['cidr']}: the key-holding pod reaches providers only through the egress proxy")
            if "ipBlock" not in peer and any(p.get("port") == proxy_port for p in rule.get("ports", [])):
                to_proxy = True
    if outside and not to_proxy:
        problem(f"{name(np)}: no egress to the egress proxy (a namespace and pod selector on port {proxy_port})")

# The console's egress: the admin API and DNS only.
console_labels = {"app.kubernetes.io/component": "console"}
console_nps = [np for np in netpols if np["spec"]["podSelector"].get("matchLabels") and selects(np["spec"]["podSelector"], console_labels) and "Egress" in np["spec"].get("policyTypes", [])]
if not console_nps:
    problem("no NetworkPolicy limits withdraw-console's egress (pods app.kubernetes.io/component=console): the admin API and DNS only")
for np in console_nps:
    for rule in np["spec"].get("egress", []):
        for peer in rule.get("to") or [{"ipBlock": {"cidr": "0.0.0.0/0"}}]:
            if "ipBlock" in peer:
                problem(f"{name(np)}: the console's egress goes beyond the admin API and DNS ({peer['ipBlock']['cidr']})")

# Alerts keep `namespace`: an AlertmanagerConfig routes only alerts of its own namespace.
aggregation = re.compile(r"\b(sum|min|max|avg|group|stddev|stdvar|count|count_values|bottomk|topk|quantile|limitk|limit_ratio)\s*(?:(by|without)\s*\(([^)]*)\))?\s*\(")
for a, rule in alerts.items():
    for m in aggregation.finditer(str(rule["expr"])):
        if m.group(2) != "by" or "namespace" not in [x.strip() for x in m.group(3).split(",")]:
            problem(f"alert {a}: `{m.group(0).strip()}` aggregates the namespace label away: write `{m.group(1)} by (namespace, ...)` (an AlertmanagerConfig routes only alerts of its own namespace)")
            break
rule_tests = root / "deploy/prometheus/withdrawd-rules.test.yml"
if rule_tests.exists():
    for t in yaml.safe_load(rule_tests.read_text()).get("tests", []):
        for case in t.get("alert_rule_test", []):
            for e in case.get("exp_alerts", []):
                if "namespace" not in e.get("exp_labels", {}):
                    problem(f"withdrawd-rules.test.yml: an expected {case['alertname']} alert has no namespace label")

# IAM: exact queue ARNs, a key ARN for KMS, exact secrets; trust pinned to one ServiceAccount.
queue_arns = set()
for key in ["requests_url", "signed_url", "invalid_dlq_url", "tx_dlq_url"]:
    m = re.match(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com/(\d{12})/(.+)$", urls[key])
    if m:
        queue_arns.add(f"arn:aws:sqs:{m.group(1)}:{m.group(2)}:{m.group(3)}")
secret_ids = cfg.get("signer", {}).get("secrets_manager_ids", [])
key_arn = re.compile(r"^arn:aws:kms:[a-z0-9-]+:\d{12}:key/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}|KEY_ID|HOT_WALLET_KEY_ID)$")
for policy_file in sorted((k8s / "iam").glob("*.json")):
    f = f"iam/{policy_file.name}"
    for st in json.loads(policy_file.read_text())["Statement"]:
        resources = st.get("Resource", [])
        for r in resources if isinstance(resources, list) else [resources]:
            if r == "*":
                problem(f"{f}: Resource \"*\"")
            elif r.startswith("arn:aws:sqs:"):
                if "*" in r or "?" in r:
                    problem(f"{f}: {r} is a wildcard: grant the exact queue ARNs")
                elif r not in queue_arns:
                    problem(f"{f}: {r} is no queue of the configuration")
            elif r.startswith("arn:aws:kms:"):
                if not key_arn.match(r):
                    problem(f"{f}: kms Resource {r} is not a key ARN (key/<key id>; an alias or a name never matches in Resource)")
            elif r.startswith("arn:aws:secretsmanager:"):
                if not any(r.endswith(f":secret:{sid}-??????") for sid in secret_ids):
                    problem(f"{f}: {r} is not secret:<id>-?????? for an id of signer.secrets_manager_ids")
trusts = {role: f"withdrawd-{role}" for role in roles}
trusts["keda"] = None  # KEDA's operator, not a pod of ours
for role, sa_name in trusts.items():
    trust_file = k8s / "iam" / "trust" / f"{role}.json"
    if not trust_file.exists():
        problem(f"no IRSA trust policy iam/trust/{role}.json")
        continue
    statements = json.loads(trust_file.read_text())["Statement"]
    web = [st for st in statements if "sts:AssumeRoleWithWebIdentity" in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])]
    want_sub = f"system:serviceaccount:{ns_name}:{sa_name}" if sa_name else "system:serviceaccount:keda:keda-operator"
    for st in statements:
        principal = st.get("Principal", {})
        if principal == "*" or "*" in json.dumps(principal):
            problem(f"iam/trust/{role}.json: a wildcard principal")
    pinned_ok = bool(web)
    for st in web:
        issuer = st.get("Principal", {}).get("Federated", "").split(":oidc-provider/", 1)[-1]
        cond = st.get("Condition", {}).get("StringEquals", {})
        if cond.get(f"{issuer}:sub") != want_sub or cond.get(f"{issuer}:aud") != "sts.amazonaws.com" or "StringLike" in st.get("Condition", {}):
            pinned_ok = False
    if not pinned_ok:
        problem(f"iam/trust/{role}.json must pin <issuer>:sub to {want_sub} and <issuer>:aud to sts.amazonaws.com (StringEquals)")

# The build itself, where kubectl (with its kustomize) is installed: it renders, the ids of
# aws-ids.yaml reached their targets, and the configuration's name carries its hash.
kubectl = shutil.which("kubectl")
if kubectl:
    out = subprocess.run([kubectl, "kustomize", str(k8s)], capture_output=True, text=True)
    if out.returncode != 0:
        problem(f"kubectl kustomize {k8s.name}/ fails: {(out.stderr.strip().splitlines() or [''])[-1]}")
    else:
        rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
        if "SET-FROM-aws-ids.yaml" in out.stdout:
            problem("kustomize left a SET-FROM-aws-ids.yaml placeholder: a replacement lost its target")
        if any(d["kind"] == "ConfigMap" and d["metadata"]["name"] == "withdrawd-aws-ids" for d in rendered):
            problem("aws-ids.yaml is applied: it must stay local (config.kubernetes.io/local-config)")
        cms = [d["metadata"]["name"] for d in rendered if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("withdrawd-config")]
        if not any(re.fullmatch(r"withdrawd-config-[a-z0-9]{10}", c) for c in cms):
            problem(f"the rendered configuration is named {cms}: no content hash, so config edits would not roll pods")

for p in problems:
    print(f"k8s: {p}")
print(f"k8s: {len(docs)} resources checked ({len(crs)} against CRD schemas), {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
