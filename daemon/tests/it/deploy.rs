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
