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

/// The check is only worth something if it fails: each of these breaks one promise.
#[test]
fn kubernetes_manifest_check_catches_broken_promises() {
    let cases: [(&str, &str, &str, &str); 6] = [
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
    ];
    for (file, from, to, expect) in cases {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&Path::new(ROOT).join("k8s"), dir.path());
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} no longer contains {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let (ok, out) = check_k8s(dir.path());
        assert!(!ok && out.contains(expect), "{file}: {from:?} -> {to:?} should fail with {expect:?}:\n{out}");
    }
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
