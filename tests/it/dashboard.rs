//! `timebucket dashboard` in a real browser (Debian's headless `chromium`)
//! during a pipeline run on the real broker: the page updates while the
//! worker runs, and at the end its latest minute, its minute count, its
//! invalid and late counts are those on the topics (read_committed). The
//! screenshot it takes is `docs/dashboard.png` when
//! `TIMEBUCKET_UPDATE_SCREENSHOT=1` is set.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use timebucket::core::metric::MetricRecord;

use crate::common::pipeline::{read_topic, Pipeline};
use crate::common::tools::{require, url_in_log, Running};
use crate::common::wait_until;

/// Headless Chromium with a profile of its own, at 1200x800.
fn chromium(profile: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("chromium");
    c.args([
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        "--no-first-run",
        "--window-size=1200,800",
        // Lets the page's script fetch and draw before the DOM is taken.
        "--virtual-time-budget=4000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .stderr(Stdio::null());
    c
}

/// The page's DOM after its script ran.
fn dom(profile: &Path, url: &str) -> String {
    let out = chromium(profile, &["--dump-dom", url]).output().unwrap();
    assert!(out.status.success(), "chromium --dump-dom failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The attributes (as text) and the text of the element with `id`.
fn element<'a>(dom: &'a str, id: &str) -> (&'a str, &'a str) {
    let marker = format!("id=\"{id}\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let rest = &dom[at..];
    let open_end = rest.find('>').unwrap();
    let text = &rest[open_end + 1..];
    (&rest[..open_end], &text[..text.find('<').unwrap()])
}

fn number(dom: &str, id: &str) -> Option<u64> {
    element(dom, id).1.replace(',', "").trim().parse().ok()
}

/// What the page shows of its latest minute: (window_start, users).
fn latest_minute(dom: &str) -> Option<(u64, u64)> {
    let (attrs, text) = element(dom, "latest-minute-users");
    let start = attrs.split("data-start=\"").nth(1)?.split('"').next()?;
    Some((start.parse().ok()?, text.trim().parse().ok()?))
}

#[test]
fn the_dashboard_shows_the_topics_live_in_a_real_browser() {
    require("chromium", "chromium");
    let p = Pipeline::new("dash");
    let path = p.input_file(20_000, &["not json", r#"{"ts":1468243900}"#]);
    p.ingest(&path);
    let log = p.dir.path().join("dashboard.log");
    let dashboard = p
        .command(&["dashboard", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _dashboard = Running(dashboard);
    let url = url_in_log(&log, "/");
    let profile = tempfile::tempdir().unwrap();

    let mut worker = Running(p.worker(&["--throttle", "2000"]));
    // While the worker runs, the page shows minutes as they close.
    let mut during = None;
    while worker.is_running() {
        let page = dom(profile.path(), &url);
        let minutes = number(&page, "minute-windows").unwrap_or(0);
        if minutes > 0 && worker.is_running() {
            during = Some(minutes);
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let during = during.expect("the page showed no minute while the worker ran");
    let status = worker.wait(Duration::from_secs(120));
    assert!(status.success(), "worker: {status}\n{}", p.worker_logs());

    // What the topics hold, read_committed, the last value of a key winning.
    let minutes: BTreeMap<u64, MetricRecord> = read_topic(&p.bootstrap, &p.minutes)
        .iter()
        .map(|r| serde_json::from_slice::<MetricRecord>(&r.payload).unwrap())
        .map(|m| (m.window_start, m))
        .collect();
    let (&start, last) = minutes.last_key_value().expect("minutes on the topic");
    let want = (start, last.unique_users.unwrap());
    let dead_letters = read_topic(&p.bootstrap, &p.dead_letter).len() as u64;
    let late = read_topic(&p.bootstrap, p.late.as_ref().unwrap());
    let late_minute = late
        .iter()
        .filter(|r| r.headers.get("timebucket.late").map(String::as_str) == Some("minute"))
        .count() as u64;
    assert_eq!(dead_letters, 2, "ingest dead-letters the two bad lines");

    let mut page = String::new();
    wait_until(
        Duration::from_secs(60),
        "the page to show the topics' end",
        || {
            page = dom(profile.path(), &url);
            latest_minute(&page) == Some(want)
                && number(&page, "minute-windows") == Some(minutes.len() as u64)
        },
    );
    assert!(
        during < minutes.len() as u64,
        "the page updated while the worker ran ({during} minutes then, {} at the end)",
        minutes.len()
    );
    let frames: u64 = minutes.values().map(|m| m.frames).sum();
    assert_eq!(number(&page, "frames-total"), Some(frames));
    assert_eq!(number(&page, "invalid-total"), Some(dead_letters));
    assert_eq!(number(&page, "late-second"), Some(late.len() as u64));
    assert_eq!(number(&page, "late-minute"), Some(late_minute));
    assert!(page.contains("<rect"), "the users chart has bars");
    assert!(page.contains("<polyline"), "the frames chart has a line");

    let shot = p.dir.path().join("dashboard.png");
    let out = chromium(
        profile.path(),
        &[&format!("--screenshot={}", shot.display()), &url],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "chromium --screenshot failed");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    if std::env::var_os("TIMEBUCKET_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        std::fs::write(docs, png).unwrap();
    }
}
