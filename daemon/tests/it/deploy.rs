//! The shipped deployment artifacts, checked with the real tools: the hardened systemd
//! units with `systemd-analyze verify` and `systemd-analyze security --offline=yes`.

use std::path::Path;
use std::process::Command;

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../systemd");

/// The units, with ExecStart pointed at this build's binary (verify checks it exists).
fn staged_units() -> (tempfile::TempDir, Vec<std::path::PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    for e in std::fs::read_dir(UNITS).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "service") {
            let text = std::fs::read_to_string(&p).unwrap().replace("/usr/local/bin/withdrawd", env!("CARGO_BIN_EXE_withdrawd"));
            let dest = dir.path().join(p.file_name().unwrap());
            std::fs::write(&dest, text).unwrap();
            out.push(dest);
        }
    }
    out.sort();
    (dir, out)
}

fn run(args: &[&str], files: &[&Path]) -> (bool, String) {
    let out = Command::new("systemd-analyze").args(args).args(files).output().expect("systemd-analyze");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn systemd_units_verify_cleanly() {
    let (_dir, units) = staged_units();
    let names: Vec<String> = units.iter().map(|u| u.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(
        names,
        [
            "withdrawd-admin.service",
            "withdrawd-intake.service",
            "withdrawd-migrate.service",
            "withdrawd-sender.service",
            "withdrawd-signer.service",
            "withdrawd-tracker.service"
        ]
    );
    let files: Vec<&Path> = units.iter().map(|p| p.as_path()).collect();
    let (ok, out) = run(&["verify"], &files);
    assert!(ok && out.trim().is_empty(), "systemd-analyze verify:\n{out}");
}

#[test]
fn systemd_units_are_hardened() {
    let (_dir, units) = staged_units();
    for u in &units {
        // Exposure 0.0 (best) to 10.0; 1.5 is well inside systemd's "OK" band.
        let (ok, out) = run(&["security", "--offline=yes", "--threshold=15"], &[u]);
        assert!(ok, "{}:\n{out}", u.display());
        let text = std::fs::read_to_string(u).unwrap();
        for must in [
            "DynamicUser=yes",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=\n",
            "SystemCallFilter=@system-service",
        ] {
            assert!(text.contains(must), "{}: {must:?}", u.display());
        }
        // Only the signer ever sees the hot-wallet key.
        let is_signer = u.ends_with("withdrawd-signer.service");
        assert_eq!(text.contains("hot-wallet-key"), is_signer, "{}", u.display());
    }
}

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Runs scripts/check-k8s.py (Kubernetes schemas, CRD schemas, and the deployment's own
/// rules) on a manifest directory.
fn check_k8s(dir: &Path) -> (bool, String) {
    let python = std::env::var("WITHDRAW_TOOLS_PYTHON").unwrap_or_else(|_| format!("{ROOT}/.tools/venv/bin/python"));
    let out = Command::new(&python)
        .arg(format!("{ROOT}/scripts/check-k8s.py"))
        .arg(env!("CARGO_BIN_EXE_withdrawd"))
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}); run scripts/tools.sh"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn kubernetes_manifests_pass_their_schemas_and_rules() {
    let (ok, out) = check_k8s(&Path::new(ROOT).join("k8s"));
    assert!(ok, "{out}");
    assert!(out.contains("0 problem(s)") && out.contains("against CRD schemas"), "{out}");
}

/// The check is only worth something if it fails: each of these breaks one promise, and the
/// checker must say which. The cases run in parallel (each is a full checker run).
#[test]
fn kubernetes_manifest_check_catches_broken_promises() {
    let cases: [(&str, &str, &str, &str); 39] = [
        ("deployments.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "restricted Pod Security"),
        ("deployments.yaml", "revisionHistoryLimit: 5", "revisionHistoryLimit: 5\n  replicaz: 2", "replicaz"),
        (
            "iam/sender.json",
            "\"sqs:ChangeMessageVisibility\"]",
            "\"sqs:ChangeMessageVisibility\", \"secretsmanager:GetSecretValue\"]",
            "only the signer",
        ),
        ("keda.yaml", "  scaleTargetRef:\n    name: withdrawd-sender\n", "", "scaleTargetRef"),
        ("aws.yaml", "\"maxReceiveCount\":5", "\"maxReceiveCount\":50", "must redrive"),
        (
            "pdbs.yaml",
            "matchLabels: {app.kubernetes.io/name: withdrawd, app.kubernetes.io/component: tracker}",
            "matchLabels: {app.kubernetes.io/name: withdrawd, app.kubernetes.io/component: trackr}",
            "withdrawd-tracker: no PodDisruptionBudget",
        ),
        // Issue 19, 1: the signer's security group (strict mode) and its link to ACK.
        (
            "aws.yaml",
            "  ingressRules:\n    - ipProtocol: tcp\n      fromPort: 8082\n      toPort: 8082\n",
            "  ingressRules:\n    - ipProtocol: tcp\n      fromPort: 8080\n      toPort: 8080\n",
            "no ingress to the health port 8082",
        ),
        (
            "aws.yaml",
            "    - ipProtocol: tcp\n      fromPort: 53\n      toPort: 53\n",
            "    - ipProtocol: tcp\n      fromPort: 5353\n      toPort: 5353\n",
            "DNS needs tcp 53",
        ),
        (
            "aws.yaml",
            "      fromPort: 8545\n      toPort: 8545\n",
            "      fromPort: 8546\n      toPort: 8546\n",
            "no egress to tcp 8545 for the chain endpoint own-node",
        ),
        (
            "kustomization.yaml",
            "fieldPaths: [spec.securityGroups.groupIds.0]",
            "fieldPaths: [metadata.annotations.sg]",
            "groupIds is a literal",
        ),
        // 3: alerts reach the admin webhook; CloudWatch watches what Prometheus cannot.
        (
            "generated/prometheusrule.yaml",
            "max by (namespace) (withdraw_withdrawals{status=\"INVALID\"})",
            "max(withdraw_withdrawals{status=\"INVALID\"})",
            "aggregates the namespace label away",
        ),
        (
            "aws.yaml",
            "    - {name: QueueName, value: withdraw-requests}\n",
            "    - {name: QueueName, value: withdraw-requestz}\n",
            "no CloudWatch alarm on the ApproximateAgeOfOldestMessage of withdraw-requests",
        ),
        (
            "aws.yaml",
            "metricName: NumberOfMessagesReceived\n          dimensions: [{name: QueueName, value: withdraw-invalid-dlq}]",
            "metricName: ApproximateNumberOfMessagesVisible\n          dimensions: [{name: QueueName, value: withdraw-invalid-dlq}]",
            "sweep keeps visible messages near zero",
        ),
        ("aws.yaml", "oKActions:", "okActions:", "spec.okActions is not a field"),
        // 4: a budget never selects a Job's pods.
        (
            "pdbs.yaml",
            "matchLabels: {app.kubernetes.io/name: withdrawd, app.kubernetes.io/component: tracker}",
            "matchLabels: {app.kubernetes.io/name: withdrawd}",
            "also selects the pods of Job/",
        ),
        // 5: one tracker.
        ("deployments.yaml", "    type: Recreate\n", "    type: RollingUpdate\n", "strategy must be Recreate"),
        (
            "jobs.yaml",
            "\"/etc/withdrawd/withdrawd.toml\", \"migrate\"]",
            "\"/etc/withdrawd/withdrawd.toml\", \"tracker\", \"--once\"]",
            "runs a tracker beside Deployment/withdrawd-tracker",
        ),
        // 6: readiness above the dependency probe.
        (
            "deployments.yaml",
            "            timeoutSeconds: 5\n",
            "            timeoutSeconds: 3\n",
            "must be above the dependency probe's 3 s",
        ),
        // 7: IAM.
        ("iam/signer.json", ":key/KEY_ID", ":key/withdraw-hot-wallets", "is not a key ARN"),
        ("iam/signer.json", ":key/HOT_WALLET_KEY_ID\"], \"Condition\"", ":alias/hot-wallet-1\"], \"Condition\"", "is not a key ARN"),
        (
            "iam/trust/signer.json",
            "system:serviceaccount:withdraw:withdrawd-signer",
            "system:serviceaccount:withdraw:*",
            "iam/trust/signer.json must pin",
        ),
        (
            "iam/intake.json",
            "\"Resource\": [\"arn:aws:sqs:eu-west-1:123456789012:withdraw-requests\"]",
            "\"Resource\": [\"arn:aws:sqs:eu-west-1:123456789012:withdraw-*\"]",
            "is a wildcard: grant the exact queue ARNs",
        ),
        // 8: the signer at a fixed count; no replicas where KEDA scales.
        (
            "keda.yaml",
            "  scaleTargetRef:\n    name: withdrawd-sender\n",
            "  scaleTargetRef:\n    name: withdrawd-signer\n",
            "scales the signer",
        ),
        (
            "deployments.yaml",
            "  # No replicas: KEDA's ScaledObject (keda.yaml) owns the count.\n",
            "  replicas: 2\n",
            "replicas: fights ScaledObject/withdrawd-sender",
        ),
        // 9: the migrate Job.
        (
            "jobs.yaml",
            "kind: Job\nmetadata:\n  name: withdrawd-migrate-",
            "kind: Job\nmetadata:\n  name: withdrawd-migrate-fixed-",
            "must carry the release",
        ),
        ("jobs.yaml", "  activeDeadlineSeconds: 900\n", "", "no activeDeadlineSeconds"),
        (
            "jobs.yaml",
            "configMap: {name: withdrawd-migrate-config}",
            "configMap: {name: withdrawd-config}",
            "mounts the generated ConfigMap",
        ),
        (
            "jobs.yaml",
            "configMap: {name: withdrawd-rds-ca}",
            "configMap: {name: withdrawd-rds}",
            "does not mount ConfigMap/withdrawd-rds-ca",
        ),
        (
            "jobs.yaml",
            "secretKeyRef: {name: withdrawd-database-migrate, key: url}",
            "secretKeyRef: {name: withdrawd-database, key: url}",
            "must connect as its own database user",
        ),
        // 10, the manifest side: an RPC URL secret reaches every role.
        (
            "deployments.yaml",
            "            - name: WITHDRAW_RPC_PROVIDER_A_URL\n",
            "            - name: WITHDRAW_RPC_PROVIDER_B_URL\n",
            "which its container does not set",
        ),
        // 11: generated configuration, the health port, the signer's and the console's egress, spreading, digests.
        (
            "kustomization.yaml",
            "    options:\n      labels:",
            "    options:\n      disableNameSuffixHash: true\n      labels:",
            "config edits would not roll pods",
        ),
        (
            "deployments.yaml",
            "httpGet: {path: /readyz, port: health}",
            "httpGet: {path: /readyz, port: http}",
            "readinessProbe must use the health port",
        ),
        ("deployments.yaml", "            - {name: health, containerPort: 8082, protocol: TCP}\n", "", "no containerPort named health"),
        (
            "monitoring.yaml",
            "    - {port: health, path: /metrics, interval: 15s}\n",
            "    - {port: http, path: /metrics, interval: 15s}\n",
            "scrapes port 'http'",
        ),
        (
            "networkpolicies.yaml",
            "        - namespaceSelector:\n            matchLabels: {kubernetes.io/metadata.name: egress-proxy}\n          podSelector:\n            matchLabels: {app.kubernetes.io/name: egress-proxy}\n      ports:\n        - {protocol: TCP, port: 3128}\n",
            "        - ipBlock: {cidr: 0.0.0.0/0}\n      ports:\n        - {protocol: TCP, port: 443}\n",
            "withdrawd-signer allows egress to 0.0.0.0/0",
        ),
        (
            "deployments.yaml",
            "            - {name: HTTPS_PROXY,",
            "            - {name: HTTPS_PROXX,",
            "no HTTPS_PROXY sends them to the egress proxy",
        ),
        (
            "networkpolicies.yaml",
            "    matchLabels: {app.kubernetes.io/component: console}\n  policyTypes: [Ingress, Egress]\n",
            "    matchLabels: {app.kubernetes.io/component: consolez}\n  policyTypes: [Ingress, Egress]\n",
            "limits withdraw-console's egress",
        ),
        (
            "deployments.yaml",
            "          topologyKey: kubernetes.io/hostname\n",
            "          topologyKey: topology.kubernetes.io/region\n",
            "no topologySpreadConstraint over kubernetes.io/hostname",
        ),
        ("kustomization.yaml", "    digest: sha256:", "    # digest: sha256:", "not pinned by digest"),
    ];
    let failures: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = cases
            .iter()
            .map(|&(file, from, to, expect)| {
                s.spawn(move || {
                    let dir = tempfile::tempdir().unwrap();
                    copy_dir(&Path::new(ROOT).join("k8s"), dir.path());
                    let path = dir.path().join(file);
                    let text = std::fs::read_to_string(&path).unwrap();
                    if !text.contains(from) {
                        return Some(format!("{file} no longer contains {from:?}"));
                    }
                    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
                    let (ok, out) = check_k8s(dir.path());
                    (ok || !out.contains(expect)).then(|| format!("{file}: {from:?} -> {to:?} should fail with {expect:?}:\n{out}"))
                })
            })
            .collect();
        runs.into_iter().filter_map(|r| r.join().unwrap()).collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}
