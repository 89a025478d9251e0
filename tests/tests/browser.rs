//! The web UI in a real headless Chromium (Debian's `chromium` and `chromium-driver`), driven
//! over WebDriver: Drydock's original test plan, done for real. Screenshots of the lease page
//! before and after the release are saved under `target/screenshots/`.

use drydock_tests::{COUNTING_WASM, Daemon, Env, FAST_RETRIES, MISBEHAVE_WASM, TOKEN, wait_for};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use std::path::PathBuf;
use std::process::Stdio;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process and a browser session on it; both end when dropped.
struct Browser {
    client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Kills chromedriver's process group: Chromium and its helpers with it (killing
    /// chromedriver alone would leave them running).
    fn drop(&mut self) {
        if let Some(pid) = self
            .driver
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32))
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Browser {
    async fn start() -> Self {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: install Debian's chromium and chromium-driver (.ci/run does)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let options = json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1200,1000",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        });
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        let webdriver = format!("http://127.0.0.1:{port}");
        let client = wait_for("chromedriver to start a session", || {
            let capabilities = capabilities.clone();
            let webdriver = webdriver.clone();
            async move {
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&webdriver)
                    .await
                    .ok()
            }
        })
        .await;
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// The element's text, or `None` if there is no such element. Pages replace their
    /// content while they refresh, so a read that finds a stale element is retried.
    async fn text(&self, css: &str) -> Option<String> {
        loop {
            match self.client.find(Locator::Css(css)).await {
                Err(e) if e.is_no_such_element() => return None,
                Err(e) => panic!("finding {css}: {e}"),
                Ok(element) => match element.text().await {
                    Ok(text) => return Some(text),
                    Err(e) if is_stale(&e) => continue,
                    Err(e) => panic!("reading {css}: {e}"),
                },
            }
        }
    }

    /// Whether the element is enabled (retried like [`Browser::text`]).
    async fn enabled(&self, css: &str) -> bool {
        loop {
            let element = self.client.find(Locator::Css(css)).await.unwrap();
            match element.is_enabled().await {
                Ok(enabled) => return enabled,
                Err(e) if is_stale(&e) => continue,
                Err(e) => panic!("reading {css}: {e}"),
            }
        }
    }

    /// Clicks the element (retried like [`Browser::text`]).
    async fn click(&self, css: &str) {
        loop {
            let element = self.client.find(Locator::Css(css)).await.unwrap();
            match element.click().await {
                Ok(()) => return,
                Err(e) if is_stale(&e) => continue,
                Err(e) => panic!("clicking {css}: {e}"),
            }
        }
    }

    async fn screenshot(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }

    async fn sign_in(&self, base: &str) {
        self.client.goto(&format!("{base}/signin")).await.unwrap();
        let token = self.client.find(Locator::Id("token")).await.unwrap();
        token.send_keys(TOKEN).await.unwrap();
        self.click("#submit").await;
        wait_for("the sign-in to land", || async {
            self.text("#signout").await
        })
        .await;
    }
}

fn is_stale(error: &fantoccini::error::CmdError) -> bool {
    matches!(
        error,
        fantoccini::error::CmdError::Standard(e) if e.error == fantoccini::error::ErrorStatus::StaleElementReference
    )
}

/// An active lease, then a web-only daemon (no workers, and `extra`) so commands stay queued
/// until `workers` is started.
async fn setup(env: &Env, extra: &[&str]) -> (Daemon, String) {
    env.add_blueprint(
        "counting",
        COUNTING_WASM,
        r#"{"release_delay_ms": 300}"#,
        &[],
    )
    .await;
    let workers = env.serve(&["--listen", "off"]);
    env.ok(&[
        "lease",
        "request",
        "--type",
        "counted",
        "--wait",
        "--timeout",
        "90s",
    ])
    .await;
    assert!(workers.terminate().await);
    let mut web = env.serve(&[&["--workers", "0"], extra].concat());
    let base = web.url().await;
    (web, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_a_lease_from_the_web_ui() {
    let env = Env::new();
    let (_web, base) = setup(&env, &[]).await;
    let browser = Browser::start().await;
    browser.sign_in(&base).await;

    browser
        .client
        .goto(&format!("{base}/leases/L1"))
        .await
        .unwrap();
    assert_eq!(browser.text("#status").await.unwrap(), "active");
    assert!(
        browser.enabled("#release").await,
        "Release is enabled on an active lease"
    );
    assert!(browser.text("#releasing").await.is_none());
    browser.screenshot("lease-before-release.png").await;

    browser.click("#release").await;
    // A click that submits a form returns before the next page has loaded.
    let confirm = wait_for("the confirmation page", || async {
        let url = browser.client.current_url().await.ok()?;
        if !url.path().ends_with("/leases/L1/release") {
            return None;
        }
        browser.text("#confirm").await
    })
    .await;
    assert!(confirm.contains("release L1"), "{confirm}");
    browser.click("#confirm").await;

    wait_for("the lease page after confirming", || async {
        browser
            .client
            .current_url()
            .await
            .ok()
            .filter(|u| u.path() == "/leases/L1")
            .map(|_| ())
    })
    .await;
    assert_eq!(
        browser.text("#commands .command .state").await.unwrap(),
        "queued"
    );
    assert_eq!(
        browser.text("#commands .command .author").await.unwrap(),
        "web:operator"
    );
    assert_eq!(
        browser.text("#commands .command .kind").await.unwrap(),
        "release"
    );
    assert!(
        !browser.enabled("#release").await,
        "Release is disabled while one is queued"
    );
    assert_eq!(browser.text("#releasing").await.unwrap(), "Releasing");

    // A marker that a reload would wipe: the page must update in place.
    browser
        .client
        .execute("window.drydockMarker = 42;", vec![])
        .await
        .unwrap();
    let _workers = env.serve(&["--listen", "off"]);
    wait_for("the page to show the lease destroyed", || async {
        (browser.text("#status").await.as_deref() == Some("destroyed")).then_some(())
    })
    .await;
    wait_for("the page to show the command applied", || async {
        (browser.text("#commands .command .outcome").await.as_deref() == Some("applied"))
            .then_some(())
    })
    .await;
    assert_eq!(
        browser.text("#commands .command .state").await.unwrap(),
        "consumed"
    );
    let marker = browser
        .client
        .execute("return window.drydockMarker;", vec![])
        .await
        .unwrap();
    assert_eq!(
        marker,
        json!(42),
        "the page was reloaded instead of updated"
    );
    assert!(
        !browser.enabled("#release").await,
        "Release is disabled on a destroyed lease"
    );
    assert_eq!(browser.text("#work").await.unwrap(), "idle");
    assert!(browser.text("#releasing").await.is_none());
    browser.screenshot("lease-after-release.png").await;

    let store = env.store().await;
    let commands = store.command_list(&Default::default()).await.unwrap();
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].author, "web:operator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_signing_in_nothing_mutates() {
    let env = Env::new();
    // Objects are public here: anyone may look, and nobody who is not signed in may change.
    let (_web, base) = setup(&env, &["--public-reads"]).await;
    let browser = Browser::start().await;

    for page in ["/leases/L1", "/resources/R1"] {
        browser.client.goto(&format!("{base}{page}")).await.unwrap();
        assert!(
            !browser.enabled("#release").await,
            "{page}: Release enabled without sign-in"
        );
        assert!(browser.text("a[href^='/signin']").await.is_some());
    }
    assert!(!browser.enabled("#reclaim").await);
    browser
        .client
        .goto(&format!("{base}/blueprints/B1"))
        .await
        .unwrap();
    assert!(!browser.enabled("#disable").await);

    // The confirmation page offers no form, and posting anyway is refused.
    browser
        .client
        .goto(&format!("{base}/leases/L1/release"))
        .await
        .unwrap();
    assert!(browser.text("#confirm").await.is_none());
    let client = reqwest::Client::new();
    for path in [
        "/leases/L1/release",
        "/resources/R1/release",
        "/resources/R1/reclaim",
        "/blueprints/B1/disable",
    ] {
        let response = client
            .post(format!("{base}{path}"))
            .form(&[("csrf", "guess")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::FORBIDDEN, "{path}");
    }
    // A forged form from a signed-in browser fails the CSRF check too.
    browser.sign_in(&base).await;
    let cookie = browser
        .client
        .get_named_cookie("drydock_session")
        .await
        .unwrap();
    let response = client
        .post(format!("{base}/leases/L1/release"))
        .header("cookie", format!("drydock_session={}", cookie.value()))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::FORBIDDEN);
    // Wrong tokens do not sign in.
    browser.client.delete_all_cookies().await.unwrap();
    browser
        .client
        .goto(&format!("{base}/signin"))
        .await
        .unwrap();
    browser
        .client
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys("not-the-token-at-all")
        .await
        .unwrap();
    browser.click("#submit").await;
    wait_for("the sign-in refusal", || async {
        browser.text("#signin-error").await
    })
    .await;

    let store = env.store().await;
    assert!(
        store
            .command_list(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.blueprint_list().await.unwrap()[0].enabled);
}

/// Serves `html` to every request on a port of its own (another origin than the daemon's,
/// the same site for cookies): an attacker's page. Returns its URL.
async fn serve_page(html: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{html}",
                html.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_another_origin_cannot_frame_the_ui() {
    let env = Env::new();
    let (_web, base) = setup(&env, &[]).await;
    let browser = Browser::start().await;
    browser.sign_in(&base).await;
    let attacker = serve_page(format!(
        r#"<!doctype html><title>prizes</title><iframe id="victim" src="{base}/leases/L1/release" width="900" height="600"></iframe>"#
    ))
    .await;
    browser.client.goto(&attacker).await.unwrap();
    let frame = browser.client.find(Locator::Id("victim")).await.unwrap();
    frame.enter_frame().await.unwrap();
    // The frame settles on the browser's own error page, never on the confirmation page.
    let url: String = wait_for("the framed page to settle", || async {
        let state = browser
            .client
            .execute("return [document.readyState, document.URL]", vec![])
            .await
            .ok()?;
        let (ready, url) = (state[0].as_str()?, state[1].as_str()?);
        (ready == "complete" && url != "about:blank").then(|| url.to_string())
    })
    .await;
    assert!(
        url.starts_with("chrome-error://"),
        "the UI rendered in a frame: {url}"
    );
    assert!(browser.text("#confirm").await.is_none());
    browser.client.enter_parent_frame().await.unwrap();
    browser.screenshot("framed-ui-refused.png").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_shows_the_guests_words_first_and_folds_the_backtrace() {
    let env = Env::new();
    env.add_blueprint("misbehave", MISBEHAVE_WASM, r#"{"mode": "trap"}"#, &[])
        .await;
    let mut daemon = env.serve(&FAST_RETRIES);
    let base = daemon.url().await;
    env.request_one("trouble", &[]).await;
    let store = env.store().await;
    let object = wait_for("the trap to be logged", || async {
        let logs = store.log_list(None, 0, 1000).await.unwrap();
        logs.into_iter()
            .find(|l| l.message.contains("trapped: deliberate trap"))
            .map(|l| l.object)
    })
    .await;
    let page = match object.to_string().chars().next() {
        Some('L') => "leases",
        Some('R') => "resources",
        _ => "blueprints",
    };
    let browser = Browser::start().await;
    browser.sign_in(&base).await;
    browser
        .client
        .goto(&format!("{base}/{page}/{object}"))
        .await
        .unwrap();
    let cell = browser
        .client
        .find(Locator::XPath(
            "//table[@id='logs']//td[contains(., 'trapped: deliberate trap')]",
        ))
        .await
        .unwrap();
    let text = cell.text().await.unwrap();
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.ends_with("allocate-resource trapped: deliberate trap"),
        "the guest's words end the first line: {text}"
    );
    assert!(
        !text.contains("wasm backtrace"),
        "the backtrace is folded: {text}"
    );
    let backtrace = cell.find(Locator::Css("details.more pre")).await.unwrap();
    assert!(!backtrace.is_displayed().await.unwrap());
    browser.screenshot("trap-folded.png").await;
    cell.find(Locator::Css("details.more summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(backtrace.text().await.unwrap().contains("wasm backtrace"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lease_stays_visible_and_lists_page() {
    let env = Env::new();
    env.add_blueprint("counting", COUNTING_WASM, r#"{"release_delay_ms": 0}"#, &[])
        .await;
    env.add_blueprint("misbehave", MISBEHAVE_WASM, r#"{"mode": "trap"}"#, &[])
        .await;
    let mut daemon = env.serve(&FAST_RETRIES);
    let base = daemon.url().await;
    let failed = env.request_one("trouble", &[]).await;
    env.ok(&[
        "lease",
        "request",
        "--type",
        "counted",
        "--count",
        "7",
        "--wait",
        "--timeout",
        "90s",
    ])
    .await;
    let store = env.store().await;
    let end = wait_for("the trapping lease to end broken", || async {
        let lease = store.lease_get(failed).await.unwrap();
        (lease.status == drydock_host::domain::LeaseStatus::Destroyed)
            .then_some(lease.end)
            .flatten()
    })
    .await;
    assert!(end.is_failure(), "{end}");

    let browser = Browser::start().await;
    browser.sign_in(&base).await;
    browser.client.goto(&format!("{base}/")).await.unwrap();
    let hour = wait_for("the console to count the failure", || async {
        browser
            .text("#lease-failures td.hour")
            .await
            .filter(|t| t != "0")
    })
    .await;
    assert_eq!(hour, "1");
    assert_eq!(
        browser.text("#lease-failures td.day").await.as_deref(),
        Some("1")
    );
    browser.screenshot("console-failure-counted.png").await;

    browser
        .client
        .goto(&format!("{base}/leases/{failed}"))
        .await
        .unwrap();
    let tags = browser.text("#status").await.unwrap();
    assert!(
        tags.contains("destroyed") && tags.contains("failed"),
        "{tags}"
    );
    let ended = browser.text("#end").await.unwrap();
    assert!(
        ended.starts_with("broken: ") && ended.contains("trapped: deliberate trap"),
        "{ended}"
    );
    let verdict = browser.text("#steps tr.step td.verdict").await.unwrap();
    assert!(verdict.starts_with("failed: "), "{verdict}");
    browser.screenshot("failed-lease.png").await;

    // Failed only: the one lease; all, three at a time, newest first, with a way on.
    browser
        .client
        .goto(&format!("{base}/leases?failed=true"))
        .await
        .unwrap();
    let rows = browser
        .client
        .find_all(Locator::Css("#leases tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "a header and the failed lease");
    browser
        .client
        .goto(&format!("{base}/leases?limit=3"))
        .await
        .unwrap();
    let first_page = browser.text("#leases").await.unwrap();
    assert!(
        first_page.contains("L8") && !first_page.contains("L5"),
        "{first_page}"
    );
    browser.screenshot("leases-paginated.png").await;
    browser.click("#older").await;
    wait_for("the next page", || async {
        browser
            .text("#leases")
            .await
            .filter(|t| t.contains("L5") && !t.contains("L8"))
    })
    .await;
    assert!(browser.text("#newest").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_page_keeps_the_operators_selection_while_nothing_changes() {
    let env = Env::new();
    // An active lease on a web-only daemon: the page stays live, and nothing changes.
    let (_web, base) = setup(&env, &[]).await;
    let browser = Browser::start().await;
    browser.sign_in(&base).await;
    browser
        .client
        .goto(&format!("{base}/leases/L1"))
        .await
        .unwrap();
    let selected = browser
        .client
        .execute(
            "const cell=document.querySelector('#properties td');\
             const range=document.createRange();range.selectNodeContents(cell);\
             const s=window.getSelection();s.removeAllRanges();s.addRange(range);\
             return s.toString();",
            vec![],
        )
        .await
        .unwrap();
    assert!(!selected.as_str().unwrap_or_default().is_empty());
    // Wait for three polls of the page; each is answered 304, so nothing is replaced.
    let polls = "return performance.getEntriesByType('resource')\
                 .filter(e=>e.initiatorType==='fetch').length;";
    wait_for("the page to poll three times", || async {
        let count = browser.client.execute(polls, vec![]).await.unwrap();
        (count.as_u64().unwrap_or(0) >= 3).then_some(())
    })
    .await;
    let still = browser
        .client
        .execute("return window.getSelection().toString();", vec![])
        .await
        .unwrap();
    assert_eq!(still, selected, "the selection survived the polls");
    assert!(
        browser.text("main[data-live]").await.is_some(),
        "the page is still live"
    );
}
