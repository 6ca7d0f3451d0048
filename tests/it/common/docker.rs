//! A Docker engine and a compose project for the tests that run the compose
//! files: `scripts/images engine` (installs and starts dockerd if needed,
//! finds or builds a compose CLI) and `scripts/images build` (the offline
//! images), once per test process, and `scripts/images cargo` (the
//! Dockerfile built as users do) where asked; [`Stack`] is one compose project in a
//! folder of its own, always taken down with `down -v` when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::wait_until;

pub const BIN: &str = env!("CARGO_BIN_EXE_timebucket");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The engine's compose command and the images of `scripts/images build`
/// (`KAFKA_IMAGE=...` lines), for the compose files' image variables.
pub struct Engine {
    pub compose: Vec<String>,
    pub images: Vec<(String, String)>,
}

fn script(args: &[&str]) -> Result<String, String> {
    let started = Instant::now();
    let out = Command::new(repo().join("scripts/images"))
        .args(args)
        .output()
        .map_err(|e| format!("cannot run scripts/images: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "scripts/images {} failed ({}):\n{stderr}",
            args.join(" "),
            out.status
        ));
    }
    eprintln!(
        "scripts/images {}: {:.1} s\n{stderr}",
        args.join(" "),
        started.elapsed().as_secs_f64()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `scripts/images engine` once per process: the compose command it prints.
fn started() -> Result<Vec<String>, String> {
    static STARTED: OnceLock<Result<Vec<String>, String>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            Ok(script(&["engine"])?
                .lines()
                .last()
                .ok_or("scripts/images engine printed no compose command")?
                .split_whitespace()
                .map(String::from)
                .collect())
        })
        .clone()
}

/// `NAME=image` lines of scripts/images.
fn variables(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The engine, set up once per process. A test never skips: with no engine
/// (none answers and none can be installed or started) it fails with the
/// reason.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        let compose = started()?;
        let images = variables(&script(&["build", "--binary", BIN])?);
        Ok(Engine { compose, images })
    });
    match engine {
        Ok(e) => e,
        Err(reason) => panic!("no Docker engine for the compose tests: {reason}"),
    }
}

/// `scripts/images cargo`: the Dockerfile built as users build it
/// (`BINARY=cargo`, librdkafka and timebucket compiled in its cargo stage)
/// with only its two base images swapped by build arguments: `RUST_IMAGE`
/// (this machine's toolchain on the Debian base), `RUNTIME_IMAGE` (the
/// Debian base) and the result, `TIMEBUCKET_IMAGE`. Once per process; with
/// no engine or no toolchain it fails with the reason.
/// Returns the image named `name` (`TIMEBUCKET_IMAGE`, `RUST_IMAGE` or
/// `RUNTIME_IMAGE`).
pub fn cargo_image(name: &str) -> String {
    static IMAGES: OnceLock<Result<Vec<(String, String)>, String>> = OnceLock::new();
    let images = IMAGES.get_or_init(|| {
        started()?;
        Ok(variables(&script(&["cargo"])?))
    });
    match images {
        Ok(i) => i
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("scripts/images cargo printed no {name}: {i:?}")),
        Err(reason) => panic!("the Dockerfile's cargo build: {reason}"),
    }
}

/// One stack at a time: two would share 2 cores and slow each other past
/// their deadlines.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `docker ARGS`: stdout, or the failure with stderr.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker").args(args).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A compose project named `project` in a fresh folder that holds copies of
/// the repository's compose files, `deploy/` and `topics/` (the files users
/// run, byte for byte), so relative binds (`./data`, `./secrets`) are the
/// test's own.
pub struct Stack {
    pub project: String,
    pub dir: tempfile::TempDir,
    files: Vec<String>,
    env: Vec<(String, String)>,
    compose: Vec<String>,
}

impl Stack {
    /// `files` are compose files relative to the repository; `env` the
    /// variables the files read (nothing else of the test's environment
    /// reaches compose).
    pub fn new(project: &str, files: &[&str], env: &[(&str, String)]) -> Stack {
        let engine = engine();
        let dir = tempfile::Builder::new().prefix(project).tempdir().unwrap();
        for file in files {
            let name = Path::new(file).file_name().unwrap();
            std::fs::copy(repo().join(file), dir.path().join(name)).unwrap();
        }
        for tree in ["deploy", "topics"] {
            copy_tree(&repo().join(tree), &dir.path().join(tree));
        }
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let mut vars: Vec<(String, String)> = engine.images.clone();
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        Stack {
            project: project.to_string(),
            dir,
            files: files
                .iter()
                .map(|f| {
                    Path::new(f)
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect(),
            env: vars,
            compose: engine.compose.clone(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.compose[0]);
        c.args(&self.compose[1..])
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["-p", &self.project]);
        for f in &self.files {
            c.args(["-f", f]);
        }
        c.args(args);
        c
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs compose; panics with its stderr and the stack's logs if it fails.
    #[track_caller]
    pub fn run(&self, args: &[&str]) -> String {
        let started = Instant::now();
        let out = self.output(args);
        // Never a password in the test's output.
        let shown: Vec<&str> = args
            .iter()
            .map(|a| {
                if a.contains("password") {
                    "<secret>"
                } else {
                    a
                }
            })
            .collect();
        assert!(
            out.status.success(),
            "{} {shown:?} failed: {}\n{}",
            self.compose.join(" "),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        eprintln!(
            "{}: compose {shown:?}: {:.1} s",
            self.project,
            started.elapsed().as_secs_f64()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The ids of the service's running containers.
    pub fn containers(&self, service: &str) -> Vec<String> {
        self.run(&["ps", "-q", service])
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    /// The last lines of every service's log, for failure messages.
    pub fn logs(&self) -> String {
        let out = self.output(&["logs", "--no-color", "--tail", "60"]);
        format!(
            "--- compose logs of {}:\n{}{}",
            self.project,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Waits until `timebucket health URL` succeeds inside every container.
    pub fn wait_healthy(&self, containers: &[String], url: &str, deadline: Duration) {
        let started = Instant::now();
        let mut last = String::new();
        for id in containers {
            let remaining = deadline.saturating_sub(started.elapsed());
            let what = format!("{url} in container {id}");
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                wait_until(remaining, &what, || {
                    match docker(&["exec", id, "timebucket", "health", url]) {
                        Ok(_) => true,
                        Err(e) => {
                            last = e;
                            false
                        }
                    }
                })
            }));
            if result.is_err() {
                panic!("{what} never answered: {last}\n{}", self.logs());
            }
        }
    }
}

impl Drop for Stack {
    /// Always `down -v`: containers, networks and volumes go, also after a
    /// failed assertion.
    fn drop(&mut self) {
        let out = self.output(&["down", "-v", "--remove-orphans", "--timeout", "10"]);
        if !out.status.success() {
            eprintln!(
                "{}: down -v failed: {}",
                self.project,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
