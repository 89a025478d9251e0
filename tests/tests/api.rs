//! The HTTP API of a real `drydock serve`: every endpoint, the auth refusals and bad input.

use base64::Engine as _;
use drydock_tests::api::Api;
use drydock_tests::{
    COUNTING_WASM, Env, FAST_RETRIES, HOST_POOL_CONFIG, HOST_POOL_GRANT, HOST_POOL_WASM,
    MISBEHAVE_WASM, TOKEN, wait_for,
};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

async fn api(env: &Env, daemon: &mut drydock_tests::Daemon) -> Api {
    let _ = env;
    Api::new(daemon.url().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_works_with_a_token() {
    let env = Env::new();
    let mut daemon = env.serve(&[]);
    let api = api(&env, &mut daemon).await;

    let wasm =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(HOST_POOL_WASM).unwrap());
    let config: Value = serde_json::from_str(HOST_POOL_CONFIG).unwrap();
    let (status, added) = api
        .post(
            "/blueprints",
            Some(json!({"name": "host-pool", "wasm": wasm, "config": config, "grants": [HOST_POOL_GRANT]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(
        (added["id"].as_str(), added["resource_type"].as_str()),
        (Some("B1"), Some("host"))
    );
    let (status, list) = api.get("/blueprints").await;
    assert_eq!(
        (status, list.as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
    assert_eq!(api.get("/blueprints/host-pool").await.1["id"], "B1");
    assert_eq!(
        api.post("/blueprints/B1/disable", None).await.1["enabled"],
        false
    );
    assert_eq!(
        api.post("/blueprints/B1/enable", None).await.1["enabled"],
        true
    );
    let (status, refused) = api
        .post(
            "/blueprints/B1/update",
            Some(json!({"config": {"hosts": []}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("`hosts` is empty"),
        "{refused}"
    );
    let (status, updated) = api
        .post(
            "/blueprints/B1/update",
            Some(json!({"wasm": wasm, "config": config})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        updated["config"].as_str(),
        Some(config.to_string().as_str())
    );

    let (status, leases) = api
        .post("/leases", Some(json!({"type": "host", "attributes": {"purpose": "api"}, "until": "1h", "count": 2})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{leases}");
    assert_eq!(leases.as_array().unwrap().len(), 2);
    assert_eq!(leases[0]["owner"], "api:operator");
    let id = leases[0]["id"].as_str().unwrap().to_string();
    wait_for("the lease to be active", || async {
        (api.get(&format!("/leases/{id}")).await.1["status"] == "active").then_some(())
    })
    .await;
    let (_, lease) = api.get(&format!("/leases/{id}")).await;
    assert_eq!(
        (
            lease["resource_type"].as_str(),
            lease["attributes"]["purpose"].as_str()
        ),
        (Some("host"), Some("api"))
    );
    assert!(lease["until"].is_u64());
    // Its place in the work queue: claimed at least once, by the fencing token.
    assert_eq!(lease["work"]["object"], id.as_str());
    assert!(lease["work"]["token"].as_i64().unwrap() >= 1, "{lease}");
    let (_, active) = api.get("/leases?status=active").await;
    assert!(!active.as_array().unwrap().is_empty());

    let (_, resources) = api.get("/resources").await;
    let resource = resources[0]["id"].as_str().unwrap().to_string();
    let (_, detail) = api.get(&format!("/resources/{resource}")).await;
    assert_eq!(
        detail["slot_locks"][0]["name"],
        "B1:host-pool.host(local-1)"
    );
    assert_eq!(detail["work"]["object"], resource.as_str());
    assert!(!detail["leases"].as_array().unwrap().is_empty());
    assert_eq!(
        api.get("/resources?status=active")
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let (status, command) = api.post(&format!("/leases/{id}/release"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{command}");
    assert_eq!(
        (command["kind"].as_str(), command["author"].as_str()),
        (Some("release"), Some("api:operator"))
    );
    wait_for("the release to be applied", || async {
        let (_, commands) = api.get(&format!("/commands?target={id}")).await;
        (commands[0]["outcome"] == "applied").then_some(())
    })
    .await;
    let (_, pending) = api.get("/commands?pending=true").await;
    assert!(
        pending
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["target"] != id.as_str())
    );
    let (_, logs) = api.get(&format!("/logs?object={id}")).await;
    let types: Vec<&str> = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"lease.released") && types.contains(&"lease.destroyed"),
        "{types:?}"
    );
    let (_, tail) = api
        .get(&format!(
            "/logs?object={id}&after={}&limit=1",
            logs[0]["id"]
        ))
        .await;
    assert_eq!(tail.as_array().unwrap().len(), 1);
    assert_eq!(tail[0]["id"], logs[1]["id"]);

    // Reclaim: refused while a lease holds the resource, then applied once it is idle.
    let (status, _) = api
        .post(&format!("/resources/{resource}/reclaim"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let other = leases[1]["id"].as_str().unwrap();
    api.post(&format!("/leases/{other}/release"), None).await;
    let (status, _) = api
        .post(&format!("/resources/{resource}/release"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_for("the resource to be destroyed", || async {
        (api.get(&format!("/resources/{resource}")).await.1["status"] == "destroyed").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_need_a_valid_token_and_bad_input_is_refused() {
    let env = Env::new();
    env.add_blueprint("counting", COUNTING_WASM, "{}", &[])
        .await;
    env.ok(&["lease", "request", "--type", "counted"]).await;
    let mut daemon = env.serve(&[]);
    let api = api(&env, &mut daemon).await;
    let store = env.store().await;

    let mutations = [
        "/leases",
        "/leases/L1/release",
        "/resources/R1/release",
        "/resources/R1/reclaim",
        "/blueprints",
        "/blueprints/B1/disable",
    ];
    for path in mutations {
        let (status, body) = api.call(Method::POST, path, None, Some(json!({}))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
        let (status, body) = api
            .call(
                Method::POST,
                path,
                Some("wrong-token-000000000"),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("not valid"),
            "{body}"
        );
    }
    let commands = store.command_list(&Default::default()).await.unwrap();
    assert!(
        commands.is_empty(),
        "an unauthorized request queued {commands:?}"
    );
    assert!(
        store
            .blueprint_get("B1".parse().unwrap())
            .await
            .unwrap()
            .enabled
    );

    let bad: [(Method, &str, Option<Value>, StatusCode, &str); 12] = [
        (
            Method::GET,
            "/leases/L999",
            None,
            StatusCode::NOT_FOUND,
            "L999 does not exist",
        ),
        (
            Method::GET,
            "/leases/R1",
            None,
            StatusCode::BAD_REQUEST,
            "R1 is a resource, not a lease",
        ),
        (
            Method::GET,
            "/leases/banana",
            None,
            StatusCode::BAD_REQUEST,
            "is not an object id",
        ),
        (
            Method::GET,
            "/leases?status=happy",
            None,
            StatusCode::BAD_REQUEST,
            "is not a status",
        ),
        (
            Method::GET,
            "/nowhere",
            None,
            StatusCode::NOT_FOUND,
            "no such API endpoint",
        ),
        (
            Method::DELETE,
            "/leases",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        ),
        (
            Method::GET,
            "/logs?limit=lots",
            None,
            StatusCode::BAD_REQUEST,
            "limit: invalid digit",
        ),
        (
            Method::POST,
            "/leases",
            Some(json!({"type": "counted", "attributes": {"Bad Key": "1"}})),
            StatusCode::BAD_REQUEST,
            "is malformed",
        ),
        (
            Method::POST,
            "/leases",
            Some(json!({"type": "counted", "until": "soon"})),
            StatusCode::BAD_REQUEST,
            "`until` is not a duration",
        ),
        (
            Method::POST,
            "/leases",
            Some(json!({"type": "counted", "blueprints": ["nope"]})),
            StatusCode::NOT_FOUND,
            "no blueprint \"nope\"",
        ),
        (
            Method::POST,
            "/leases",
            Some(json!({"tyype": "counted"})),
            StatusCode::BAD_REQUEST,
            "unknown field `tyype`",
        ),
        (
            Method::POST,
            "/blueprints",
            Some(json!({"name": "x", "wasm": "not base64!"})),
            StatusCode::BAD_REQUEST,
            "`wasm` is not base64",
        ),
    ];
    for (method, path, body, expected, message) in bad {
        let (status, answer) = api.call(method, path, Some(TOKEN), body).await;
        assert_eq!(status, expected, "{path}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or_default()
                .contains(message),
            "{path}: {answer}"
        );
    }

    let junk = base64::engine::general_purpose::STANDARD.encode(b"junk");
    let (status, answer) = api
        .post("/blueprints", Some(json!({"name": "x", "wasm": junk})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("not a valid WebAssembly component")
    );
    let wasm =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(COUNTING_WASM).unwrap());
    let (status, answer) = api
        .post(
            "/blueprints",
            Some(json!({"name": "counting", "wasm": wasm})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let (status, answer) = api
        .post(
            "/blueprints",
            Some(json!({"name": "c2", "wasm": wasm, "config": {"nonsense": 1}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `nonsense`"),
        "{answer}"
    );

    wait_for("the lease to be active", || async {
        (api.get("/leases/L1").await.1["status"] == "active").then_some(())
    })
    .await;
    api.post("/leases/L1/release", None).await;
    wait_for("the lease to be destroyed", || async {
        (api.get("/leases/L1").await.1["status"] == "destroyed").then_some(())
    })
    .await;
    let (status, answer) = api.post("/leases/L1/release", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("L1 is destroyed"),
        "{answer}"
    );
    assert_eq!(store.blueprint_list().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_address_needs_a_token() {
    let env = Env::new();
    let out = env.drydock(&["serve", "--listen", "0.0.0.0:0"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let env = Env::new();
    let mut daemon = env.serve(&["--workers", "0"]);
    let base = daemon.url().await;
    let client = Client::new();
    for path in [
        "/",
        "/leases",
        "/signin",
        "/api/v1/leases",
        "/api/v1/nothing",
        "/assets/live.js",
    ] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
    }
    // No inline code on the pages, so the policy needs no 'unsafe-inline'.
    let page = client
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !page.contains("<style>") && !page.contains("style=\""),
        "{page}"
    );
    assert!(
        page.contains(r#"<script src="/assets/live.js"></script>"#),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_only_ever_leads_to_a_same_origin_path() {
    let env = Env::new();
    let mut daemon = env.serve(&["--workers", "0"]);
    let base = daemon.url().await;
    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cases = [
        ("/leases?status=active", "/leases?status=active"),
        ("/\\evil.example", "/"),
        ("/\t/evil.example", "/"),
        ("//evil.example", "/"),
        ("https://evil.example", "/"),
        ("/ /evil.example", "/"),
        ("", "/"),
    ];
    for (next, landing) in cases {
        let response = client
            .post(format!("{base}/signin"))
            .form(&[("token", TOKEN), ("next", next)])
            .send()
            .await
            .unwrap();
        assert!(response.status().is_redirection(), "{next:?}");
        assert_eq!(response.headers()["location"], landing, "{next:?}");
    }
}

/// `wasm` with a custom section of `bytes` zeros appended: still a valid component.
fn with_custom_section(mut wasm: Vec<u8>, bytes: usize) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                return;
            }
        }
    }
    let name = b"padding";
    let mut section = Vec::new();
    leb128(name.len(), &mut section);
    section.extend_from_slice(name);
    section.resize(section.len() + bytes, 0);
    wasm.push(0);
    leb128(section.len(), &mut wasm);
    wasm.extend(section);
    wasm
}

/// POSTs `body` with the operator token on a connection of its own and returns what the server
/// answered. The server refuses a body past its limit as soon as it has read that much, and may
/// close before the rest is sent: an HTTP client reports that as a broken pipe and drops the
/// answer, so this writes what it can and then reads.
async fn post_past_the_limit(base: &str, path: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.strip_prefix("http://").unwrap();
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /api/v1{path} HTTP/1.1\r\nhost: drydock\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(64 << 10) {
        if socket.write_all(chunk).await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_limit_is_stated_answered_with_413_and_fits_a_real_component() {
    let env = Env::new();
    // A release build of host-pool is 3.4 MB, past axum's default 2 MB; the guest build here is
    // smaller, so a custom section makes it that size.
    let component = with_custom_section(std::fs::read(HOST_POOL_WASM).unwrap(), 3_400_000);
    let wasm = base64::engine::general_purpose::STANDARD.encode(component);
    let body = json!({"name": "host-pool", "wasm": wasm, "config": json!(HOST_POOL_CONFIG),
                      "grants": [HOST_POOL_GRANT]});

    let mut small = env.serve(&["--workers", "0", "--max-body-mib", "1"]);
    let base = small.url().await;
    let answer = post_past_the_limit(&base, "/blueprints", body.to_string().as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("limit of 1 MiB"), "{answer}");
    drop(small);

    let mut daemon = env.serve(&["--workers", "0"]);
    let roomy = api(&env, &mut daemon).await;
    let (status, answer) = roomy.post("/blueprints", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_the_environment_is_taken_verbatim() {
    let env = Env::new();
    env.add_host_pool().await;
    let token = "abc#def ghijklmnopqrstuvwxyz";
    let mut daemon = env.serve(&["--workers", "0", "--token", token]);
    let client = api(&env, &mut daemon).await;
    let lease = json!({"type": "host"});
    let (status, answer) = client
        .call(Method::POST, "/leases", Some(token), Some(lease.clone()))
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the whole token works: {answer}"
    );
    for prefix in ["abc", "abc#def"] {
        let (status, _) = client
            .call(Method::POST, "/leases", Some(prefix), Some(lease.clone()))
            .await;
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN,
            "{prefix}: {status}"
        );
    }
}

/// Whether the server has closed `socket` (reading what it sent before, a 408 say).
fn closed_by_server(socket: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match socket.try_read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_cannot_hold_the_server() {
    use tokio::io::AsyncWriteExt;
    let env = Env::new();
    let mut daemon = env.serve(&[
        "--workers",
        "0",
        "--max-connections",
        "4",
        "--header-timeout",
        "2s",
    ]);
    let base = daemon.url().await;
    let address = base.strip_prefix("http://").unwrap().to_string();
    // Every connection slot taken by a client that sends half its headers, then nothing.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        socket
            .write_all(b"GET /api/v1/leases HTTP/1.1\r\nhost: drydock\r\n")
            .await
            .unwrap();
        slow.push(socket);
    }
    // A normal request waits for a slot, which the header timeout frees: by the time it is
    // answered, the server has cut off a slow client.
    let response = tokio::time::timeout(
        drydock_tests::PATIENCE,
        Client::new()
            .get(format!("{base}/api/v1/leases"))
            .bearer_auth(TOKEN)
            .send(),
    )
    .await
    .expect("slow clients held every connection")
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        slow.iter().any(closed_by_server),
        "answered while every slot was held: there is no connection cap"
    );
    wait_for("every slow client to be cut off", || async {
        slow.iter().all(closed_by_server).then_some(())
    })
    .await;
}

/// The value of one Prometheus series (`name{labels}` as printed), or 0 when it is absent.
fn series(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_newest_first_with_a_next_link_and_filters() {
    let env = Env::new();
    env.add_blueprint("misbehave", MISBEHAVE_WASM, r#"{"mode": "trap"}"#, &[])
        .await;
    let mut daemon = env.serve(&["--workers", "0"]);
    let api = api(&env, &mut daemon).await;
    env.request("host", &["--count", "5"]).await;
    let response = api
        .client
        .get(format!("{}/api/v1/leases?limit=2&owner=nobody", api.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), json!([]));

    let mut seen = Vec::new();
    let mut url = format!("{}/api/v1/leases?type=host&limit=2", api.base);
    loop {
        let response = api
            .client
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let next = response
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_string());
        let page: Value = response.json().await.unwrap();
        seen.extend(page.as_array().unwrap().iter().map(|l| l["id"].clone()));
        let Some(link) = next else { break };
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        let path = link.trim_start_matches('<').split('>').next().unwrap();
        assert!(
            path.contains("type=host") && path.contains("limit=2"),
            "{path}"
        );
        url = format!("{}{path}", api.base);
    }
    assert_eq!(seen, vec!["L5", "L4", "L3", "L2", "L1"]);

    for (query, wanted) in [
        ("limit=0", "limit 0 is out of range"),
        ("status=happy", "happy"),
        ("before=R1", "R1 is a resource, not a lease"),
        ("blueprint=nothing", "no blueprint \"nothing\""),
    ] {
        let (status, body) = api.get(&format!("/leases?{query}")).await;
        assert!(status.is_client_error(), "{query}: {status}");
        assert!(
            body["error"].as_str().unwrap().contains(wanted),
            "{query}: {body}"
        );
    }
    let (status, body) = api.get("/resources?owner=alice").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lease_keeps_its_end_and_its_steps() {
    let env = Env::new();
    env.add_blueprint("misbehave", MISBEHAVE_WASM, r#"{"mode": "trap"}"#, &[])
        .await;
    env.add_blueprint("counting", COUNTING_WASM, r#"{"release_delay_ms": 0}"#, &[])
        .await;
    let mut daemon = env.serve(&FAST_RETRIES);
    let api = api(&env, &mut daemon).await;
    let failed = env.request_one("trouble", &[]).await;
    let lease = wait_for("the lease to end", || async {
        let (_, lease) = api.get(&format!("/leases/{failed}")).await;
        (lease["status"] == "destroyed").then_some(lease)
    })
    .await;
    let end = &lease["end"];
    assert_eq!(end["kind"], "broken", "{lease}");
    assert!(
        end["detail"]
            .as_str()
            .unwrap()
            .contains("trapped: deliberate trap"),
        "{end}"
    );
    let (_, failed_list) = api.get("/leases?failed=true").await;
    assert_eq!(failed_list.as_array().unwrap().len(), 1, "{failed_list}");
    let shown = env.ok(&["lease", "show", &failed.to_string()]).await;
    assert!(shown.contains("end:           broken: "), "{shown}");

    // A lease released on purpose ends released, by whom, and its steps say what the
    // blueprint asked for and that the host applied it.
    let good = env
        .request_one("counted", &["--wait", "--timeout", "90s"])
        .await;
    api.post(&format!("/leases/{good}/release"), None).await;
    let lease = wait_for("the release", || async {
        let (_, lease) = api.get(&format!("/leases/{good}")).await;
        (lease["status"] == "destroyed").then_some(lease)
    })
    .await;
    assert_eq!(lease["end"]["kind"], "released", "{lease}");
    assert_eq!(lease["end"]["detail"], "api:operator", "{lease}");
    let (_, steps) = api.get(&format!("/steps?object={good}")).await;
    let hooks: Vec<&str> = steps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hook"].as_str().unwrap())
        .collect();
    assert!(
        hooks.contains(&"acquire-lease") && hooks.contains(&"release-lease"),
        "{steps}"
    );
    assert!(
        steps
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["verdict"] == "applied"),
        "{steps}"
    );
    let trail = env.ok(&["log", "--steps", &good.to_string()]).await;
    assert!(
        trail.contains("acquire-lease")
            && trail.contains("applied")
            && trail.contains("\"outcome\""),
        "{trail}"
    );
    let (_, failed_steps) = api.get(&format!("/steps?object={failed}")).await;
    assert!(
        failed_steps[0]["verdict"]
            .as_str()
            .unwrap()
            .starts_with("failed: allocate-resource trapped"),
        "{failed_steps}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_and_move() {
    let env = Env::new();
    env.add_blueprint("counting", COUNTING_WASM, r#"{"release_delay_ms": 0}"#, &[])
        .await;
    env.add_blueprint("misbehave", MISBEHAVE_WASM, r#"{"mode": "trap"}"#, &[])
        .await;
    let mut args = FAST_RETRIES.to_vec();
    args.extend(["--metrics-listen", "127.0.0.1:0"]);
    let mut daemon = env.serve(&args);
    let base = daemon.url().await;
    // On the API's address a scrape sends a token, as any read does; the metrics listener of
    // its own serves /metrics alone, without one.
    let client = Client::new();
    let unscraped = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(unscraped.status(), StatusCode::UNAUTHORIZED);
    let own = wait_for("the metrics listener's address", || async {
        let lines = daemon.log_lines();
        let line = lines
            .iter()
            .find_map(|l| l.strip_prefix("drydock: metrics on "))?;
        Some(line.trim().to_string())
    })
    .await;
    let open = client.get(&own).send().await.unwrap();
    assert_eq!(open.status(), StatusCode::OK);
    let text = open.text().await.unwrap();
    assert!(
        text.contains("# TYPE drydock_") && text.ends_with("# EOF\n"),
        "{text}"
    );
    let elsewhere = own.replace("/metrics", "/api/v1/leases");
    let refused = client.get(&elsewhere).send().await.unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::NOT_FOUND,
        "the metrics listener serves metrics only"
    );
    let scrape = || async {
        let request = client.get(format!("{base}/metrics")).bearer_auth(TOKEN);
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
        response.text().await.unwrap()
    };
    let before = scrape().await;
    assert!(
        before.contains("# TYPE drydock_work_items_due gauge"),
        "{before}"
    );
    assert!(before.ends_with("# EOF\n"), "{before}");
    assert_eq!(
        series(
            &before,
            r#"drydock_commands_consumed_total{kind="release",outcome="applied"}"#
        ),
        0.0
    );

    let lease = env
        .request_one("counted", &["--wait", "--timeout", "90s"])
        .await;
    env.ok(&["lease", "release", &lease.to_string()]).await;
    env.request_one("trouble", &[]).await;
    let after = wait_for("the figures to move", || async {
        let text = scrape().await;
        let released = series(
            &text,
            r#"drydock_commands_consumed_total{kind="release",outcome="applied"}"#,
        );
        let trapped = series(
            &text,
            r#"drydock_blueprint_call_failures_total{blueprint="misbehave",hook="allocate-resource",kind="trap"}"#,
        );
        let destroyed = series(&text, r#"drydock_leases{type="counted",status="destroyed"}"#);
        (released >= 1.0 && trapped >= 1.0 && destroyed == 1.0).then_some(text)
    })
    .await;
    assert!(
        series(
            &after,
            r#"drydock_blueprint_call_duration_seconds_count{blueprint="counting",hook="acquire-lease"}"#
        ) >= 1.0,
        "{after}"
    );
    assert!(
        series(
            &after,
            r#"drydock_failed_objects{object="lease",window="1h"}"#
        ) >= 1.0,
        "{after}"
    );
    for name in [
        "drydock_work_items_due",
        "drydock_work_items_claimed",
        "drydock_oldest_due_age_seconds",
        "drydock_claim_takeovers_total",
        "drydock_fenced_writes_total",
    ] {
        assert!(
            after.lines().any(|l| l.starts_with(name)),
            "{name}: {after}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_is_not_sent_again_while_nothing_changed() {
    let env = Env::new();
    let mut daemon = env.serve(&["--workers", "0", "--public-reads"]);
    let base = daemon.url().await;
    let client = Client::new();
    let first = client.get(format!("{base}/leases")).send().await.unwrap();
    let tag = first.headers()["etag"].clone();
    assert_eq!(first.headers()["cache-control"], "no-cache");
    let again = client
        .get(format!("{base}/leases"))
        .header("if-none-match", tag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(again.bytes().await.unwrap().is_empty());
    env.request("host", &[]).await;
    let changed = client
        .get(format!("{base}/leases"))
        .header("if-none-match", tag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()["etag"], tag);
    assert!(changed.text().await.unwrap().contains("L1"));
}

/// Ways the installation's secret could be printed: hex, base64, a byte list.
fn spellings(secret: &[u8; 32]) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        hex.to_uppercase(),
        hex,
        STANDARD.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
        format!("{secret:?}"),
        serde_json::to_string(&secret.to_vec()).unwrap(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installation_secret_is_made_by_the_daemon_once_kept_and_never_shown() {
    use drydock_host::store::{self, Access, Workload};
    let env = Env::new();
    env.add_blueprint("misbehave", MISBEHAVE_WASM, r#"{"mode": "world"}"#, &[])
        .await;
    let read = store::open(&env.url, Workload::Command, Access::Read)
        .await
        .unwrap();
    assert!(
        read.installation_secret().await.is_err(),
        "neither `blueprint add` nor a read made a secret"
    );
    let mut daemon = env.serve(&[]);
    let api = api(&env, &mut daemon).await;
    // The daemon made it before it listened.
    let secret = read.installation_secret().await.unwrap();

    let lease = env.request_one("trouble", &[]).await.to_string();
    let resource = wait_for("the allocation's step", || async {
        let (_, resources) = api.get("/resources").await;
        let id = resources[0]["id"].as_str()?.to_string();
        let (_, steps) = api.get(&format!("/steps?object={lease}")).await;
        steps.to_string().contains("random: ").then_some(id)
    })
    .await;
    let mut shown = String::new();
    for path in [
        "/blueprints".to_string(),
        "/blueprints/B1".into(),
        "/leases".into(),
        format!("/leases/{lease}"),
        "/resources".into(),
        format!("/resources/{resource}"),
        "/commands".into(),
        "/logs".into(),
        format!("/steps?object={resource}"),
        format!("/steps?object={lease}"),
    ] {
        shown.push_str(&api.get(&path).await.1.to_string());
    }
    for page in [
        "/".to_string(),
        "/blueprints".into(),
        "/blueprints/B1".into(),
        "/leases".into(),
        format!("/leases/{lease}"),
        "/resources".into(),
        format!("/resources/{resource}"),
        "/metrics".into(),
    ] {
        let url = format!("{}{page}", api.base);
        shown.push_str(
            &api.client
                .get(url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    shown.push_str(&env.ok(&["log", "--steps", &resource]).await);
    shown.push_str(&env.ok(&["resource", "show", &resource]).await);
    shown.push_str(&daemon.log_lines().join("\n"));
    assert!(
        shown.contains("random: "),
        "the random bytes the blueprint drew are shown"
    );
    for spelling in spellings(&secret) {
        // The message never prints the secret itself.
        assert!(
            !shown.contains(&spelling),
            "the installation secret is shown in the API, a page or the log"
        );
    }

    assert!(daemon.terminate().await, "the daemon stops cleanly");
    let mut restarted = env.serve(&[]);
    restarted.url().await;
    assert_eq!(
        read.installation_secret().await.unwrap(),
        secret,
        "a restarted daemon keeps the installation's secret"
    );
}
