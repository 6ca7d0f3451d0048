//! The compose stack's observability checked without a Docker engine:
//! Prometheus scrapes every worker's metrics port (its config passes
//! `promtool check config`), Grafana is provisioned with that Prometheus and
//! a dashboard whose queries name metrics the worker exports, and the
//! dashboard service serves its page and is checked for health.

use std::process::Command;

use super::yaml::*;

#[test]
fn prometheus_scrapes_every_worker_which_is_checked_for_health() {
    let c = compose();
    let worker = service(&c, "worker");
    let addr = resolved(&environment(worker)["METRICS_ADDR"]);
    assert!(
        addr.starts_with("0.0.0.0:"),
        "the worker's metrics must be reachable from other containers: {addr}"
    );
    let port = port_of(&addr);
    assert_eq!(
        healthcheck(worker),
        [
            "CMD",
            "timebucket",
            "health",
            &format!("http://127.0.0.1:{port}/readyz")
        ],
        "the worker's health check asks its /readyz"
    );

    let prometheus = service(&c, "prometheus");
    let config_path = mounted_at(prometheus, "./deploy/prometheus/prometheus.yml");
    assert!(
        command(prometheus).contains(&format!("--config.file={config_path}")),
        "prometheus reads the mounted config"
    );
    let config = read_yaml("deploy/prometheus/prometheus.yml");
    let jobs = config
        .get("scrape_configs")
        .expect("scrape_configs")
        .items();
    let worker_job = jobs
        .iter()
        .find(|j| j.get("job_name").and_then(Yaml::str) == Some("worker"))
        .expect("a scrape job named worker");
    // The worker scales: its replicas come from DNS, never from fixed names.
    let sd = &worker_job
        .get("dns_sd_configs")
        .expect("dns_sd_configs")
        .items()[0];
    let names: Vec<&str> = sd
        .get("names")
        .unwrap()
        .items()
        .iter()
        .filter_map(Yaml::str)
        .collect();
    assert_eq!(names, ["worker"], "the compose service name");
    assert_eq!(sd.get("port").and_then(Yaml::str), Some(port));
    assert_eq!(sd.get("type").and_then(Yaml::str), Some("A"));
    assert!(
        healthcheck(prometheus)
            .iter()
            .any(|w| w.ends_with("/-/ready")),
        "prometheus is checked for readiness"
    );
    crate::common::tools::require("promtool", "prometheus");
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(repo().join("deploy/prometheus/prometheus.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The metric names a worker exports (every family made to show a series).
fn worker_metric_names() -> Vec<String> {
    use timebucket::observe::worker::{PartitionFigures, WorkerMetrics};
    let m = WorkerMetrics::new();
    m.end_offsets([(0, 0, 1)]);
    m.transaction_ended(0.1);
    m.partitions(
        100,
        &[PartitionFigures {
            partition: 0,
            watermark: Some(1),
            position: Some(0),
        }],
    );
    let text =
        String::from_utf8(timebucket::observe::exposition(&m.registry(), None).body).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

#[test]
fn grafana_is_provisioned_with_prometheus_and_the_dashboard() {
    let c = compose();
    let grafana = service(&c, "grafana");
    assert_eq!(
        mounted_at(grafana, "./deploy/grafana/provisioning"),
        "/etc/grafana/provisioning"
    );
    let dashboards_dir = mounted_at(grafana, "./deploy/grafana/dashboards");
    let prometheus_port = service(&c, "prometheus")
        .get("ports")
        .unwrap()
        .items()
        .iter()
        .filter_map(Yaml::str)
        .map(|p| port_of(p).to_string())
        .next()
        .expect("prometheus publishes its port");

    let sources = read_yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    let source = &sources.get("datasources").expect("datasources").items()[0];
    assert_eq!(source.get("type").and_then(Yaml::str), Some("prometheus"));
    assert_eq!(
        source.get("url").and_then(Yaml::str),
        Some(format!("http://prometheus:{prometheus_port}").as_str()),
        "the data source is the compose file's prometheus service"
    );
    let uid = source
        .get("uid")
        .and_then(Yaml::str)
        .expect("a data source uid");

    let providers = read_yaml("deploy/grafana/provisioning/dashboards/timebucket.yml");
    let provider = &providers.get("providers").expect("providers").items()[0];
    assert_eq!(
        provider
            .get("options")
            .and_then(|o| o.get("path"))
            .and_then(Yaml::str),
        Some(dashboards_dir.as_str()),
        "the provider reads the mounted dashboards"
    );
    let home = resolved(&environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]);
    assert_eq!(home, format!("{dashboards_dir}/timebucket.json"));

    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/timebucket.json"))
            .expect("the dashboard is JSON");
    let exported = worker_metric_names();
    let mut titles = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        titles.push(panel["title"].as_str().unwrap().to_lowercase());
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], uid, "{panel}");
            let expr = target["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("timebucket_"))
            {
                assert!(
                    exported.iter().any(|e| e == name),
                    "panel {:?} queries {name}, which the worker does not export",
                    panel["title"]
                );
            }
        }
    }
    for topic in ["frames per second", "invalid", "late", "watermark", "lag"] {
        assert!(
            titles.iter().any(|t| t.contains(topic)),
            "no panel about {topic}: {titles:?}"
        );
    }
}

#[test]
fn the_dashboard_service_serves_the_page() {
    let c = compose();
    let dashboard = service(&c, "dashboard");
    assert_eq!(command(dashboard), ["dashboard"]);
    let env = environment(dashboard);
    let reads = timebucket::cli::env_vars("dashboard");
    for var in env.keys() {
        assert!(
            reads.contains(var) || var == "RUST_LOG",
            "dashboard sets {var}, which the CLI does not read"
        );
    }
    let port = port_of(&resolved(&env["DASHBOARD_ADDR"])).to_string();
    let published: Vec<String> = dashboard
        .get("ports")
        .expect("dashboard ports")
        .items()
        .iter()
        .filter_map(Yaml::str)
        .map(resolved)
        .collect();
    assert!(
        published
            .iter()
            .any(|p| p.starts_with("127.0.0.1:") && port_of(p) == port),
        "the page's port {port} is published on 127.0.0.1: {published:?}"
    );
    assert_eq!(
        healthcheck(dashboard),
        [
            "CMD",
            "timebucket",
            "health",
            &format!("http://127.0.0.1:{port}/healthz")
        ]
    );
}
