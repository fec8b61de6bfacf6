//! The compose files and Kubernetes manifests, validated offline: against the
//! Compose Specification's schema and Kubernetes' own schemas, and for the
//! promises the schemas cannot see (see `tests/deploy/validate.py`).

use polymeter_tests::tools::{compose_schema, python, repo};

#[test]
fn compose_files_and_kubernetes_manifests_validate() {
    let schema = compose_schema();
    let out = std::process::Command::new(python())
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
