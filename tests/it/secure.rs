//! timebucket against a secure broker of its own (`scripts/kafka start
//! --secure` on port 9592: TLS with a CA of its own, SCRAM-SHA-512, ACLs
//! enforced, nothing allowed without one).
//!
//! - The whole pipeline as user `timebucket`, which holds exactly the ACLs
//!   the README lists (`scripts/kafka acls grant` for topics, ingest, worker
//!   and show on this run's prefixes): `topics`, `ingest`, two workers to the
//!   end, `show`, every window compared with `aggregate`.
//! - The refusals, each of which must end the command within seconds with
//!   exit code 5 and a message naming the cause: a wrong password (from the
//!   file and from the environment), an untrusted CA, and missing ACLs (user
//!   `limited`, which has none; a group and a transactional id outside
//!   `timebucket`'s prefixes).
//!
//! Secrets reach the commands only through a properties file
//! (`KAFKA_CLIENT_PROPERTIES`) or `TIMEBUCKET_CLIENT_SASL_PASSWORD`, never a
//! command line; the test checks the workers' command lines too. One broker
//! for all of it (it takes about 10 s to start), so the steps run in order
//! in one test.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::broker::OwnKafka;
use crate::common::pipeline::{aggregate, assert_same_windows, emitted, Pipeline};
use timebucket::core::compare::WindowSet;
use timebucket::core::metric::MetricKind;

/// The secure broker's client port (9092: the shared broker, 9292 and
/// 9392-9394: the fault tests); +10000 and +20000 are its other listeners.
const PORT: u16 = 9592;
/// Names of this test's topics and groups start with it; the ACLs cover them.
const TAG: &str = "tbsec";
/// How long a refused command may take to say so.
const FAST: Duration = Duration::from_secs(20);

#[test]
fn pipeline_over_sasl_ssl_with_the_readme_acls_and_refusals_that_fail_fast() {
    let kafka = OwnKafka::start_secure(PORT);
    // Exactly what the README says each command needs: `--for` all four.
    kafka.grant(
        "timebucket",
        &[
            "--topic-prefix",
            &format!("{TAG}-"),
            "--group-prefix",
            &format!("{TAG}-"),
            "--transactional-id-prefix",
            &format!("timebucket-{TAG}-"),
        ],
    );
    let timebucket = kafka.secure_file("timebucket");
    let p = Pipeline::named(&kafka.bootstrap, TAG, Some(timebucket.clone()));

    let step = Instant::now();
    let path = pipeline(&p, &kafka);
    eprintln!("secure: pipeline in {:.1?}", step.elapsed());

    let step = Instant::now();
    wrong_password(&p, &kafka, &path);
    untrusted_ca(&p, &kafka, &path);
    missing_acls(&p, &kafka, &path);
    eprintln!("secure: refusals in {:.1?}", step.elapsed());
}

/// topics, ingest, two workers, show, as `timebucket`; returns the input.
fn pipeline(p: &Pipeline, kafka: &OwnKafka) -> PathBuf {
    let out = p
        .command(&["topics"])
        .env(
            "TOPICS_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("topics"),
        )
        .env(
            "INPUT_PARTITIONS",
            crate::common::pipeline::PARTITIONS.to_string(),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "topics over SASL_SSL failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created = String::from_utf8_lossy(&out.stdout);
    // One topic per role in topics/.
    assert_eq!(created.matches("created").count(), 7, "{created}");

    let path = p.input_file(20_000, &["not json", r#"{"uid":"no-ts"}"#]);
    p.ingest(&path);

    let workers: Vec<_> = (0..2).map(|_| p.worker(&[])).collect();
    let password = std::fs::read_to_string(kafka.dir().join("secure/timebucket.password")).unwrap();
    assert!(password.trim().len() >= 16, "the broker made a password");
    for w in &workers {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", w.id())).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(password.trim()),
            "a password on a worker's command line"
        );
    }
    p.wait_all(workers, Duration::from_secs(120));
    let want = aggregate(&path);
    let got = emitted(p);
    assert_eq!(
        got.repeated,
        0,
        "windows emitted twice\n{}",
        p.worker_logs()
    );
    assert_same_windows(&got, &want, || p.worker_logs());
    let logs = p.worker_logs();
    assert!(
        !logs.contains("accessible to other users"),
        "the broker's properties files are mode 600\n{logs}"
    );

    let out = p.command(&["show", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "show over SASL_SSL failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = WindowSet::from_json_lines(&out.stdout).unwrap();
    let minutes = WindowSet {
        windows: want
            .windows
            .iter()
            .filter(|((kind, _), _)| *kind == MetricKind::Minute)
            .map(|(k, v)| (*k, *v))
            .collect(),
        ..WindowSet::default()
    };
    assert!(minutes.len() > 10, "the input spans minutes");
    assert_same_windows(&shown, &minutes, String::new);
    path
}

fn wrong_password(p: &Pipeline, kafka: &OwnKafka, input: &Path) {
    let file = p.dir.path().join("wrong-password.properties");
    write_variant(
        &kafka.secure_file("timebucket"),
        &file,
        "sasl.password",
        "not-the-password",
    );
    let cause = ["authentication failed", "sasl.password"];
    refused(
        with_file(p, &file, &["topics"]),
        "wrong password in the file",
        &cause,
    );
    // The environment wins over the file.
    let mut ingest = p.command(&["ingest"]);
    ingest
        .arg(input)
        .env("TIMEBUCKET_CLIENT_SASL_PASSWORD", "not-the-password");
    refused(ingest, "wrong password in the environment", &cause);
}

fn untrusted_ca(p: &Pipeline, kafka: &OwnKafka, input: &Path) {
    // A CA of our own that never signed the broker's certificate.
    let dir = p.dir.path();
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(dir.join("other-ca.key"))
        .arg("-out")
        .arg(dir.join("other-ca.pem"))
        .args(["-days", "1", "-subj", "/CN=not the broker's CA"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl could not make a CA");
    let file = dir.join("untrusted-ca.properties");
    write_variant(
        &kafka.secure_file("timebucket"),
        &file,
        "ssl.ca.location",
        &dir.join("other-ca.pem").display().to_string(),
    );
    let cause = [
        "not signed by a CA this client trusts",
        "certificate verify failed",
    ];
    refused(
        with_file(p, &file, &["show"]),
        "untrusted CA (show)",
        &cause,
    );
    let mut ingest = with_file(p, &file, &["ingest"]);
    ingest.arg(input);
    refused(ingest, "untrusted CA (ingest)", &cause);
}

fn missing_acls(p: &Pipeline, kafka: &OwnKafka, input: &Path) {
    // `limited` authenticates but holds no ACL at all.
    let limited = kafka.secure_file("limited");
    refused(
        with_file(p, &limited, &["topics"]),
        "no ACLs (topics)",
        &["TopicAuthorizationFailed", "not authorized"],
    );
    let mut ingest = with_file(p, &limited, &["ingest"]);
    ingest.arg(input);
    refused(
        ingest,
        "no ACLs (ingest)",
        // Ingest starts its transactions first (exactly once from file to topic).
        &[
            "TransactionalIdAuthorizationFailed",
            "not authorized",
            &p.input,
        ],
    );
    refused(
        with_file(p, &limited, &["show"]),
        "no ACLs (show)",
        &["TopicAuthorizationFailed", "not authorized"],
    );
    refused(
        with_file(p, &limited, &["worker", "--until-end"]),
        "no ACLs (worker)",
        &["TransactionalIdAuthorizationFailed", "not authorized"],
    );
    // `timebucket` outside its prefixes: a group of another name. Exactly
    // once, its transactional ids are refused first; at least once, the
    // group coordinator refuses it while the worker polls.
    let other = crate::common::unique_name("other-group");
    refused(
        p.command(&["worker", "--until-end", "-g", &other]),
        "transactional id outside the prefix",
        &["TransactionalIdAuthorizationFailed", "transactional id"],
    );
    refused(
        p.command(&["worker", "--until-end", "--at-least-once", "-g", &other]),
        "group outside the prefix",
        &["GroupAuthorizationFailed", "consumer group"],
    );
}

/// A command of the pipeline with another properties file.
fn with_file(p: &Pipeline, file: &Path, args: &[&str]) -> Command {
    let mut c = p.command(args);
    c.env("KAFKA_CLIENT_PROPERTIES", file);
    c
}

/// `from` with one property's value replaced, written to `to` (mode 600).
fn write_variant(from: &Path, to: &Path, key: &str, value: &str) {
    let text = std::fs::read_to_string(from).unwrap();
    let mut replaced = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| match l.split_once('=') {
            Some((k, _)) if k.trim() == key => {
                replaced = true;
                format!("{key}={value}")
            }
            _ => l.to_string(),
        })
        .collect();
    assert!(replaced, "{} has no {key}", from.display());
    std::fs::write(to, lines.join("\n") + "\n").unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Runs `cmd` and checks that it ends within [`FAST`] with exit code 5 and
/// a message on stderr that contains every one of `cause`.
#[track_caller]
fn refused(mut cmd: Command, what: &str, cause: &[&str]) {
    let started = Instant::now();
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > FAST * 3 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {:?}", started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = started.elapsed();
    let stderr = reader.join().unwrap();
    let message = stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!(
        "secure: {what}: exit {:?} after {elapsed:.1?}: {message}",
        status.code()
    );
    assert_eq!(status.code(), Some(5), "{what}: exit code\n{stderr}");
    assert!(elapsed < FAST, "{what}: took {elapsed:?}\n{stderr}");
    for c in cause {
        assert!(
            message.contains(c),
            "{what}: the error does not say {c:?}:\n{stderr}"
        );
    }
}
