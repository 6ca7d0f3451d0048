//! `docker-compose.yml`, `Dockerfile` and `.dockerignore` checked without a
//! Docker engine: the compose file is read with yaml-rust2, then its
//! structure is checked: the services exist, images are pinned, the worker
//! scales (no container_name, hostname or host ports), bind mounts point into
//! the repository, every variable the worker reads is set and the CLI still
//! reads it, topic names agree between services, and the bootstrap address is
//! one the broker advertises; the secure overlay passes secrets as files.
//! Where `docker compose` or `docker-compose` works, `config --quiet` is run
//! as well. Prometheus, Grafana and the health checks are in
//! [`observability`]; the YAML tree and its lookups in [`yaml`].

mod observability;
mod yaml;

use std::process::Command;

use yaml::*;

const TIMEBUCKET_SERVICES: [&str; 4] = ["topics", "ingest", "worker", "dashboard"];

/// What `timebucket worker` reads from the environment, as the compose file
/// must set it.
const WORKER_VARIABLES: [&str; 9] = [
    "BOOTSTRAP_SERVERS",
    "CONSUMER_GROUP_ID",
    "INPUT_TOPIC",
    "SEC_METRICS_OUTPUT_TOPIC",
    "MIN_METRICS_OUTPUT_TOPIC",
    "OUTPUT_STREAM",
    "DEAD_LETTER_TOPIC",
    "PRINT_INTERVAL",
    "METRICS_ADDR",
];

const TOPIC_VARIABLES: [&str; 5] = [
    "INPUT_TOPIC",
    "SEC_METRICS_OUTPUT_TOPIC",
    "MIN_METRICS_OUTPUT_TOPIC",
    "OUTPUT_STREAM",
    "DEAD_LETTER_TOPIC",
];

#[test]
fn the_services_are_there() {
    let c = compose();
    let top: Vec<&str> = c.keys();
    for key in &top {
        assert!(
            ["name", "services", "volumes", "networks"].contains(key) || key.starts_with("x-"),
            "unexpected top-level key {key:?}"
        );
    }
    let services = c.get("services").expect("services").keys();
    for name in [
        "kafka",
        "topics",
        "ingest",
        "worker",
        "kafka-ui",
        "dashboard",
        "prometheus",
        "grafana",
    ] {
        assert!(
            services.contains(&name),
            "service {name} missing (have {services:?})"
        );
    }
}

#[test]
fn images_are_pinned() {
    let c = compose();
    for (name, svc) in match c.get("services") {
        Some(Yaml::Map(entries)) => entries.clone(),
        _ => panic!("services is not a mapping"),
    } {
        // Every image is `${NAME_IMAGE:-public/image:tag}`: the tests put
        // the images of scripts/images in its place.
        let raw = svc
            .get("image")
            .and_then(Yaml::str)
            .unwrap_or_else(|| panic!("service {name} has no image"));
        let variable = raw
            .strip_prefix("${")
            .and_then(|r| r.split_once(":-"))
            .map(|(v, _)| v)
            .unwrap_or_else(|| panic!("{name}: image {raw:?} is not ${{NAME_IMAGE:-default}}"));
        assert!(
            variable.ends_with("_IMAGE") && raw.ends_with('}') && raw.matches("${").count() == 1,
            "{name}: image {raw:?} is not ${{NAME_IMAGE:-default}}"
        );
        if svc.get("build").is_some() {
            // Built here; the image name is only a local tag.
            continue;
        }
        let image = resolved(raw);
        let image = image.as_str();
        let last = image.rsplit('/').next().unwrap();
        let tag = last
            .split_once(':')
            .map(|(_, t)| t)
            .unwrap_or_else(|| panic!("{name}: image {image:?} has no tag"));
        assert!(
            !tag.is_empty() && tag != "latest" && !tag.contains("latest"),
            "{name}: image {image:?} is not pinned"
        );
        assert!(
            tag.chars().any(|c| c.is_ascii_digit()),
            "{name}: tag {tag:?} names no version"
        );
    }
    let kafka = resolved(
        service(&c, "kafka")
            .get("image")
            .and_then(Yaml::str)
            .unwrap(),
    );
    assert!(
        kafka.starts_with("apache/kafka:4."),
        "broker image {kafka:?} is not apache/kafka 4.x"
    );
    let ui = resolved(
        service(&c, "kafka-ui")
            .get("image")
            .and_then(Yaml::str)
            .unwrap(),
    );
    assert!(
        ui.starts_with("kafbat/kafka-ui:") || ui.starts_with("provectuslabs/kafka-ui:"),
        "UI image {ui:?} is not kafka-ui"
    );
    for (name, prefix) in [
        ("prometheus", "prom/prometheus:v"),
        ("grafana", "grafana/grafana:"),
    ] {
        let image = service(&c, name)
            .get("image")
            .and_then(Yaml::str)
            .map(resolved);
        assert!(
            image.as_ref().is_some_and(|i| i.starts_with(prefix)),
            "{name} runs {image:?}, not {prefix}*"
        );
    }
    for name in TIMEBUCKET_SERVICES {
        let svc = service(&c, name);
        assert_eq!(
            svc.get("build").and_then(Yaml::str),
            Some("."),
            "{name} builds the Dockerfile here"
        );
    }
}

#[test]
fn the_broker_runs_kraft_and_is_checked_for_health() {
    let c = compose();
    let kafka = service(&c, "kafka");
    let env = environment(kafka);
    assert!(
        env["KAFKA_PROCESS_ROLES"].contains("controller"),
        "KRaft: the broker is its own controller"
    );
    assert!(env.contains_key("KAFKA_CONTROLLER_QUORUM_VOTERS"));
    assert!(
        !env.keys().any(|k| k.contains("ZOOKEEPER")),
        "no ZooKeeper in KRaft mode"
    );
    assert_eq!(
        env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"], "false",
        "topics come from ./topics only"
    );
    let test = kafka
        .get("healthcheck")
        .and_then(|h| h.get("test"))
        .expect("kafka healthcheck");
    assert!(
        !test.items().is_empty(),
        "healthcheck test is a command list"
    );
    // Transactions (the worker's exactly-once mode) need these on one broker.
    assert_eq!(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"], "1");
    assert_eq!(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"], "1");
}

#[test]
fn the_worker_scales() {
    let c = compose();
    let worker = service(&c, "worker");
    for key in ["container_name", "ports", "hostname"] {
        assert!(
            worker.get(key).is_none(),
            "worker has {key}: `--scale worker=N` would clash"
        );
    }
    if let Some(replicas) = worker.get("deploy").and_then(|d| d.get("replicas")) {
        panic!("worker pins deploy.replicas to {replicas:?}; scale with --scale instead");
    }
    assert_eq!(command(worker).first().map(String::as_str), Some("worker"));
}

#[test]
fn the_worker_gets_every_variable_it_reads() {
    let c = compose();
    let env = environment(service(&c, "worker"));
    let reads = timebucket::cli::env_vars("worker");
    for var in WORKER_VARIABLES {
        assert!(env.contains_key(var), "worker does not set {var}");
        assert!(
            !resolved(&env[var]).is_empty(),
            "worker sets {var} to nothing by default"
        );
        assert!(
            reads.iter().any(|r| r == var),
            "the worker no longer reads {var}: update the compose file"
        );
    }
    for var in env.keys() {
        let known = reads.contains(var) || var == "RUST_LOG";
        assert!(known, "worker sets {var}, which the CLI does not read");
    }
}

#[test]
fn topic_names_and_bootstrap_agree_across_services() {
    let c = compose();
    let kafka_env = environment(service(&c, "kafka"));
    let advertised = resolved(&kafka_env["KAFKA_ADVERTISED_LISTENERS"]);
    for var in TOPIC_VARIABLES {
        let values: Vec<(&str, String)> = TIMEBUCKET_SERVICES
            .iter()
            .filter_map(|s| {
                environment(service(&c, s))
                    .get(var)
                    .map(|v| (*s, v.clone()))
            })
            .collect();
        assert!(
            values.len() >= 2,
            "{var} is set in fewer than two services: {values:?}"
        );
        assert!(
            values.windows(2).all(|w| w[0].1 == w[1].1),
            "{var} differs between services: {values:?}"
        );
    }
    // The defaults are the names in ./topics.
    let worker_env = environment(service(&c, "worker"));
    let files = [
        ("INPUT_TOPIC", "input.properties"),
        ("SEC_METRICS_OUTPUT_TOPIC", "metrics-second.properties"),
        ("MIN_METRICS_OUTPUT_TOPIC", "metrics-minute.properties"),
        ("OUTPUT_STREAM", "frames-forward.properties"),
        ("DEAD_LETTER_TOPIC", "dead-letter.properties"),
    ];
    for (var, file) in files {
        let text = read(&format!("topics/{file}"));
        let name = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("name="))
            .map(str::trim);
        assert_eq!(
            Some(resolved(&worker_env[var]).as_str()),
            name,
            "{var} default vs topics/{file}"
        );
    }
    for s in TIMEBUCKET_SERVICES {
        let env = environment(service(&c, s));
        let bootstrap = resolved(
            env.get("BOOTSTRAP_SERVERS")
                .unwrap_or_else(|| panic!("{s} sets no BOOTSTRAP_SERVERS")),
        );
        assert!(
            advertised
                .split(',')
                .any(|l| l.ends_with(&format!("://{bootstrap}"))),
            "{s}: BOOTSTRAP_SERVERS={bootstrap} is not among the advertised listeners {advertised}"
        );
    }
    let ui_env = environment(service(&c, "kafka-ui"));
    let ui_bootstrap = &ui_env["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"];
    assert!(
        advertised.contains(&format!("://{ui_bootstrap}")),
        "UI bootstrap {ui_bootstrap} not advertised"
    );
}

#[test]
fn one_shot_jobs_run_in_order() {
    let c = compose();
    let condition = |svc: &str, on: &str| {
        service(&c, svc)
            .get("depends_on")
            .and_then(|d| d.get(on))
            .and_then(|d| d.get("condition"))
            .and_then(Yaml::str)
            .map(String::from)
    };
    assert_eq!(
        condition("topics", "kafka").as_deref(),
        Some("service_healthy")
    );
    assert_eq!(
        condition("kafka-ui", "kafka").as_deref(),
        Some("service_healthy")
    );
    assert_eq!(
        condition("ingest", "topics").as_deref(),
        Some("service_completed_successfully")
    );
    assert_eq!(
        condition("worker", "topics").as_deref(),
        Some("service_completed_successfully")
    );

    let topics = service(&c, "topics");
    assert_eq!(command(topics), ["topics", "--topics-dir", "/topics"]);
    assert!(
        binds(topics).contains(&("./topics".into(), "/topics".into())),
        "topics mounts ./topics at /topics"
    );
    assert_eq!(topics.get("restart").and_then(Yaml::str), Some("no"));

    let ingest = service(&c, "ingest");
    assert_eq!(command(ingest), ["ingest", "/data/stream.jsonl"]);
    assert!(
        binds(ingest).contains(&("./data".into(), "/data".into())),
        "ingest mounts ./data at /data"
    );
    assert_eq!(ingest.get("restart").and_then(Yaml::str), Some("no"));
}

#[test]
fn bind_mounts_stay_in_the_repository() {
    let c = compose();
    let Some(Yaml::Map(services)) = c.get("services") else {
        panic!("services")
    };
    for (name, svc) in services {
        for (source, target) in binds(svc) {
            assert!(
                source.starts_with("./"),
                "{name}: bind source {source:?} is not inside the repository"
            );
            assert!(
                !source.split('/').any(|p| p == ".."),
                "{name}: bind source {source:?} leaves the repository"
            );
            assert!(
                target.starts_with('/'),
                "{name}: bind target {target:?} is not absolute"
            );
            if source == "./data" {
                // The user's input; Docker creates the directory if it is missing.
                continue;
            }
            assert!(
                repo().join(&source).exists(),
                "{name}: bind source {source} does not exist"
            );
        }
    }
    let defs = std::fs::read_dir(repo().join("topics"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "properties")
        })
        .count();
    assert!(defs >= 5, "topics/ has {defs} definitions");
}

#[test]
fn the_ui_listens_on_9021() {
    let c = compose();
    let ports = service(&c, "kafka-ui")
        .get("ports")
        .expect("kafka-ui ports");
    let published: Vec<String> = ports
        .items()
        .iter()
        .filter_map(|p| p.str())
        .map(resolved)
        .collect();
    assert!(
        published.iter().any(|p| {
            let parts: Vec<&str> = p.split(':').collect();
            parts.len() >= 2 && parts[parts.len() - 2] == "9021"
        }),
        "no host port 9021 in {published:?}"
    );
}

#[test]
fn the_dockerfile_builds_and_runs_timebucket() {
    let dockerfile = read("Dockerfile");
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.trim_start().starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "multi-stage build expected: {froms:?}");
    // The bases are build arguments (the tests swap them for local images)
    // whose defaults are what users build on.
    for arg in [
        "ARG RUST_IMAGE=rust:1-bookworm",
        "ARG RUNTIME_IMAGE=debian:bookworm-slim",
        "ARG BINARY=cargo",
    ] {
        assert!(dockerfile.lines().any(|l| l == arg), "no `{arg}`");
    }
    assert!(
        froms[0].starts_with("FROM ${RUST_IMAGE} AS cargo"),
        "builder is RUST_IMAGE: {froms:?}"
    );
    assert_eq!(
        froms.last().unwrap().trim(),
        "FROM ${RUNTIME_IMAGE}",
        "runtime is RUNTIME_IMAGE: {froms:?}"
    );
    // No frontend image to pull: the builder's own Dockerfile syntax.
    assert!(!dockerfile.contains("# syntax="));
    let runtime = &dockerfile[dockerfile.rfind("FROM ${RUNTIME_IMAGE}").unwrap()..];
    assert!(
        runtime.contains("USER timebucket") && runtime.contains("--uid 10001"),
        "the runtime runs as a non-root user"
    );
    assert!(
        runtime.contains(r#"CMD ["timebucket", "health", "#),
        "a HEALTHCHECK through `timebucket health`"
    );
    for compiler in ["build-essential", "cargo build", "gcc"] {
        assert!(
            !runtime.contains(compiler),
            "the runtime stage has {compiler}"
        );
    }
    assert!(dockerfile.contains("ca-certificates"));
    assert!(dockerfile.contains("--locked"), "the build uses Cargo.lock");
    assert!(dockerfile.contains(r#"ENTRYPOINT ["timebucket"]"#));
    let ignore = read(".dockerignore");
    for entry in ["target", ".git", "data"] {
        assert!(
            ignore
                .lines()
                .any(|l| l.trim().trim_end_matches('/') == entry),
            ".dockerignore lacks {entry}"
        );
    }
    // What the build copies must not be ignored.
    for needed in ["src", "Cargo.toml", "Cargo.lock", "topics"] {
        assert!(
            !ignore
                .lines()
                .any(|l| l.trim().trim_end_matches('/') == needed),
            ".dockerignore drops {needed}"
        );
    }
}

/// `docker-compose.secure.yml`: the timebucket services of the main file,
/// given the client properties and the CA as compose secrets (files under
/// `/run/secrets`), with no secret in an environment value and only
/// variables the CLI reads.
#[test]
fn the_secure_overlay_passes_secrets_as_files() {
    let base = compose();
    let overlay = parse_yaml(&read("docker-compose.secure.yml"))
        .unwrap_or_else(|e| panic!("docker-compose.secure.yml: {e}"));
    for key in overlay.keys() {
        assert!(
            ["services", "secrets"].contains(&key),
            "unexpected top-level key {key:?}"
        );
    }
    let declared = overlay.get("secrets").expect("top-level secrets");
    for name in declared.keys() {
        let file = declared
            .get(name)
            .and_then(|s| s.get("file"))
            .and_then(Yaml::str)
            .unwrap_or_else(|| panic!("secret {name} is not a file"));
        assert!(
            file.starts_with("./secrets/"),
            "secret {name} comes from {file}, not ./secrets/ (ignored by git and docker)"
        );
    }
    for ignore in [".gitignore", ".dockerignore"] {
        assert!(
            read(ignore)
                .lines()
                .any(|l| l.trim().trim_matches('/') == "secrets"),
            "{ignore} does not ignore secrets/"
        );
    }
    let services = overlay.get("services").expect("services").keys();
    assert_eq!(
        services, TIMEBUCKET_SERVICES,
        "the overlay covers the timebucket services"
    );
    for name in TIMEBUCKET_SERVICES {
        service(&base, name);
        let svc = service(&overlay, name);
        let env = environment(svc);
        let reads = timebucket::cli::env_vars(name);
        for (var, value) in &env {
            assert!(
                reads.contains(var),
                "{name} sets {var}, which the CLI does not read"
            );
            let (var_l, value_l) = (var.to_ascii_lowercase(), value.to_ascii_lowercase());
            assert!(
                !["password", "secret", "token"]
                    .iter()
                    .any(|w| var_l.contains(w))
                    && !["password", "token"].iter().any(|w| value_l.contains(w)),
                "{name}: a secret in the environment: {var}"
            );
        }
        let mounted: Vec<&str> = svc
            .get("secrets")
            .map(|s| s.items())
            .unwrap_or_default()
            .iter()
            .filter_map(Yaml::str)
            .collect();
        let file = env
            .get("KAFKA_CLIENT_PROPERTIES")
            .unwrap_or_else(|| panic!("{name} gets no KAFKA_CLIENT_PROPERTIES"));
        let secret = file
            .strip_prefix("/run/secrets/")
            .unwrap_or_else(|| panic!("{name}: KAFKA_CLIENT_PROPERTIES={file} is not a secret"));
        assert!(
            mounted.contains(&secret),
            "{name} does not mount the secret {secret}"
        );
        for m in &mounted {
            assert!(
                declared.get(m).is_some(),
                "{name} mounts the undeclared secret {m}"
            );
        }
        assert!(
            env.contains_key("BOOTSTRAP_SERVERS"),
            "{name}: the cluster's address"
        );
    }
}

/// Runs `config --quiet` with a real compose implementation where one works;
/// otherwise says so and passes (the structural checks above still ran).
#[test]
fn a_compose_implementation_accepts_the_file_if_there_is_one() {
    let file = repo().join("docker-compose.yml");
    let candidates: [(&str, &[&str]); 2] = [("docker", &["compose"]), ("docker-compose", &[])];
    for (program, prefix) in candidates {
        let probe = Command::new(program).args(prefix).arg("version").output();
        if !probe.as_ref().is_ok_and(|o| o.status.success()) {
            continue;
        }
        let out = Command::new(program)
            .args(prefix)
            .args(["--file"])
            .arg(&file)
            .args(["--profile", "ingest", "config", "--quiet"])
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} config: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    eprintln!("no docker compose implementation here: structural checks only");
}
