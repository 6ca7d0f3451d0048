//! `Dockerfile` built as users build it: `BINARY=cargo` (the default), so
//! its cargo stage compiles librdkafka and timebucket, with only the two base
//! images swapped by build arguments (`scripts/images cargo`: `RUST_IMAGE`
//! is this machine's Rust toolchain on the offline Debian base, laid out like
//! `rust:1-bookworm`; `RUNTIME_IMAGE` that base). Then the image is checked
//! as users get it: `timebucket --version` runs and matches the host's build,
//! it runs as uid 10001, it holds no compiler (while the build stage's base
//! does), its health check is `timebucket health`, and its size is printed
//! and bounded. The plain compose stack (`compose_run.rs`) runs this image;
//! the secure one the prebuilt variant of the same file.

use std::process::Command;

use crate::common::docker::{cargo_image, docker, one_at_a_time, BIN};

/// The runtime image's documented bound (docs/docker.md): the Debian base
/// and the binary with room to spare; past it something unwanted (a
/// toolchain, build output) slipped into the runtime stage.
const MAX_IMAGE_MB: f64 = 250.0;

/// The tools a runtime image must not have.
const COMPILERS: [&str; 5] = ["cc", "gcc", "rustc", "cargo", "ld"];

/// `docker run --rm --entrypoint ENTRYPOINT IMAGE ARGS`: stdout, or the
/// failure.
fn run(image: &str, entrypoint: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec![
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        entrypoint,
        image,
    ];
    all.extend_from_slice(args);
    docker(&all)
}

/// The tools of `COMPILERS` that `command -v` finds in the image.
fn compilers_in(image: &str) -> Vec<String> {
    let script = format!(
        "for t in {}; do command -v $t || true; done",
        COMPILERS.join(" ")
    );
    run(image, "sh", &["-c", &script])
        .unwrap_or_else(|e| panic!("cannot look for compilers in {image}: {e}"))
        .lines()
        .map(String::from)
        .collect()
}

fn inspect(image: &str, format: &str) -> String {
    docker(&["image", "inspect", "--format", format, image])
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .to_string()
}

#[test]
fn the_dockerfile_builds_as_users_build_it() {
    // Never beside a compose stack: both would share 2 cores.
    let _one = one_at_a_time();
    let built = cargo_image("TIMEBUCKET_IMAGE");
    let rust = cargo_image("RUST_IMAGE");

    // The binary compiled in the image is the host's version of the tree.
    let host = Command::new(BIN).arg("--version").output().unwrap();
    assert!(host.status.success(), "{BIN} --version failed");
    let inside = run(&built, "timebucket", &["--version"])
        .unwrap_or_else(|e| panic!("timebucket --version in {built}: {e}"));
    assert_eq!(inside.trim(), String::from_utf8_lossy(&host.stdout).trim());

    // Non-root: the image's user is uid 10001, also what a container runs as.
    assert_eq!(inspect(&built, "{{.Config.User}}"), "timebucket");
    let id = run(&built, "id", &["-u"]).unwrap_or_else(|e| panic!("id -u in {built}: {e}"));
    assert_eq!(id.trim(), "10001", "{built} runs as uid {id}");

    // No compiler in the runtime image; the same look finds them in the build
    // stage's base, so an empty answer is not a broken check.
    let found = compilers_in(&built);
    assert!(found.is_empty(), "{built} holds compilers: {found:?}");
    let in_rust = compilers_in(&rust);
    for tool in ["cc", "rustc", "cargo"] {
        assert!(
            in_rust.iter().any(|p| p.ends_with(&format!("/{tool}"))),
            "{rust} (the build stage's base) has no {tool}: {in_rust:?}"
        );
    }

    let health = inspect(&built, "{{json .Config.Healthcheck.Test}}");
    assert_eq!(
        health,
        r#"["CMD","timebucket","health","http://127.0.0.1:9180/readyz"]"#
    );
    assert_eq!(
        inspect(&built, "{{json .Config.Entrypoint}}"),
        r#"["timebucket"]"#
    );

    let bytes: f64 = inspect(&built, "{{.Size}}").parse().unwrap();
    let mb = bytes / 1e6;
    eprintln!(
        "{built}: {mb:.0} MB (BINARY=cargo on {})",
        cargo_image("RUNTIME_IMAGE")
    );
    assert!(
        mb < MAX_IMAGE_MB,
        "{built} is {mb:.0} MB, over the documented {MAX_IMAGE_MB} MB"
    );
}
