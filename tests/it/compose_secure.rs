//! `docker-compose.yml` with `docker-compose.secure.yml` run for real: the
//! timebucket services get their client properties and the CA as compose
//! secrets, as users run them, and talk SASL_SSL (SCRAM-SHA-512) to a broker
//! that enforces ACLs (`tests/compose/secure-broker.yml` turns the stack's
//! own `kafka` service into one). The test makes the CA, the broker's
//! keystore and the passwords, creates the `timebucket` user and grants it
//! the ACLs of docs/kafka.md for the compose file's topic, group and
//! transactional id names, then runs the checks of `compose_run.rs`.

use std::io::Read;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::docker::{docker, one_at_a_time, Stack};
use crate::compose_run::{exercise, Ports};

/// The image's user (Dockerfile): the client properties are its, mode 600.
const TIMEBUCKET_UID: u32 = 10001;
/// apache/kafka's user (and that of scripts/images' Kafka image).
const KAFKA_UID: u32 = 1000;

#[test]
fn the_secure_stack_runs_scales_and_stays_exact() {
    let (_one, started, ports) = (one_at_a_time(), Instant::now(), Ports::at(11100));
    let (broker, admin, store, user) = (password(), password(), password(), password());
    let mut env = ports.env();
    env.extend([
        ("BOOTSTRAP_SERVERS", "kafka:19093".to_string()),
        ("SECURE_BROKER_PASSWORD", broker),
        ("SECURE_ADMIN_PASSWORD", admin.clone()),
        ("SECURE_STORE_PASSWORD", store.clone()),
    ]);
    let stack = Stack::new(
        &format!("tbsecure{}", std::process::id()),
        &[
            "docker-compose.yml",
            "docker-compose.secure.yml",
            "tests/compose/secure-broker.yml",
        ],
        &env,
    );
    make_material(stack.dir.path(), &admin, &store, &user);

    stack.run(&["up", "-d", "kafka"]);
    wait_healthy_service(&stack, "kafka", Duration::from_secs(180));
    as_admin(
        &stack,
        "kafka-configs.sh",
        &[
            "--alter",
            "--entity-type",
            "users",
            "--entity-name",
            "timebucket",
            // kafka-configs reads `SCRAM-SHA-512` from a file as
            // `SCRAM_SHA_512` and refuses it: the (throwaway) password goes
            // on the command line inside the broker's container.
            "--add-config",
            &format!("SCRAM-SHA-512=[password={user}]"),
        ],
    );
    // docs/kafka.md's table (`scripts/kafka acls grant --for` all four) for
    // the compose file's names: every topic, the group `timebucket` and the
    // readers' `timebucket-reader`, transactional ids `timebucket-*`.
    let allow = ["--add", "--allow-principal", "User:timebucket"];
    for (operations, resource) in [
        (
            &["Create", "Describe", "DescribeConfigs", "Read", "Write"][..],
            &["--topic", "*"][..],
        ),
        (
            &["Read", "Describe"][..],
            &["--group", "timebucket", "--group", "timebucket-reader"][..],
        ),
        (
            &["Write", "Describe"][..],
            &[
                "--resource-pattern-type",
                "prefixed",
                "--transactional-id",
                "timebucket-",
            ][..],
        ),
    ] {
        let mut args: Vec<&str> = allow.to_vec();
        for op in operations {
            args.extend(["--operation", op]);
        }
        args.extend(resource);
        as_admin(&stack, "kafka-acls.sh", &args);
    }

    exercise(&stack, &ports, Some(stack.path("host-client.properties")));
    eprintln!(
        "secure stack: {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
}

/// 32 random hex digits: nothing to quote in JAAS or properties files.
fn password() -> String {
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Kafka tool in the broker's container, as the PLAIN super user `admin`.
fn as_admin(stack: &Stack, tool: &str, args: &[&str]) {
    let path = format!("/opt/kafka/bin/{tool}");
    let mut all = vec![
        "exec",
        "-T",
        "kafka",
        path.as_str(),
        "--bootstrap-server",
        "kafka:19092",
        "--command-config",
        "/etc/kafka/secrets/admin.properties",
    ];
    all.extend(args);
    stack.run(&all);
}

/// Waits for the service's (one) container to report `healthy`.
fn wait_healthy_service(stack: &Stack, service: &str, deadline: Duration) {
    let id = stack.containers(service).pop().expect("a container");
    let started = Instant::now();
    loop {
        let status = docker(&["inspect", "-f", "{{.State.Health.Status}}", &id]).unwrap();
        if status.trim() == "healthy" {
            return;
        }
        if started.elapsed() > deadline {
            panic!("{service} is {status} after {deadline:?}\n{}", stack.logs());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (scripts/build-deps installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write(path: &Path, text: &str, uid: u32, mode: u32) {
    std::fs::write(path, text).unwrap();
    chown(path, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `broker/`: the keystore (a certificate for `kafka` and 127.0.0.1 from a
/// fresh CA) and the admin's client properties; `secrets/`: what docker-compose.secure.yml mounts
/// (client.properties, ca.pem); and the host's client properties.
fn make_material(dir: &Path, admin: &str, store: &str, user: &str) {
    let broker = dir.join("broker");
    let secrets = dir.join("secrets");
    let work = dir.join("ca");
    for d in [&broker, &secrets, &work] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(
        work.join("openssl.cnf"),
        "[req]\ndistinguished_name = dn\n[dn]\n\
         [ca]\nbasicConstraints = critical, CA:TRUE, pathlen:0\nkeyUsage = critical, keyCertSign, cRLSign\n\
         [server]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = DNS:kafka, DNS:localhost, IP:127.0.0.1\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-new"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=compose test CA",
        "-config",
        "openssl.cnf",
        "-extensions",
        "ca",
    ]);
    openssl(&work, &ca);
    let mut csr = vec!["req", "-new"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "broker.key",
        "-out",
        "broker.csr",
        "-subj",
        "/CN=kafka",
        "-config",
        "openssl.cnf",
    ]);
    openssl(&work, &csr);
    openssl(
        &work,
        &[
            "x509",
            "-req",
            "-in",
            "broker.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            "server",
            "-out",
            "broker.pem",
        ],
    );
    openssl(
        &work,
        &[
            "pkcs12",
            "-export",
            "-in",
            "broker.pem",
            "-inkey",
            "broker.key",
            "-certfile",
            "ca.pem",
            "-name",
            "broker",
            "-passout",
            &format!("pass:{store}"),
            "-out",
            "../broker/broker.p12",
        ],
    );
    let p12 = broker.join("broker.p12");
    chown(&p12, Some(KAFKA_UID), Some(KAFKA_UID)).unwrap();
    std::fs::set_permissions(&p12, std::fs::Permissions::from_mode(0o600)).unwrap();
    write(
        &broker.join("admin.properties"),
        &format!(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n\
             sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \
             username=\"admin\" password=\"{admin}\";\n"
        ),
        KAFKA_UID,
        0o600,
    );
    let ca_pem = std::fs::read_to_string(work.join("ca.pem")).unwrap();
    write(&secrets.join("ca.pem"), &ca_pem, TIMEBUCKET_UID, 0o644);
    let client = |ca: &str| {
        format!(
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n\
             sasl.username=timebucket\nsasl.password={user}\nssl.ca.location={ca}\n"
        )
    };
    write(
        &secrets.join("client.properties"),
        &client("/run/secrets/kafka_ca"),
        TIMEBUCKET_UID,
        0o600,
    );
    write(
        &dir.join("host-client.properties"),
        &client(&secrets.join("ca.pem").to_string_lossy()),
        0,
        0o600,
    );
    std::fs::remove_dir_all(work).unwrap();
}
