//! API tokens with roles, kept in the database (`drydock token …`): what each role may do over
//! the API of a real `drydock serve`, and a revoked token refused by two daemons on the same
//! database at once, on SQLite and on PostgreSQL; web sessions that every daemon honours.

use drydock_tests::api::Api;
use drydock_tests::postgres::Cluster;
use drydock_tests::{Env, wait_for};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `GET /api/v1PATH` with `secret` as the bearer, if any.
async fn get(api: &Api, path: &str, secret: Option<&str>) -> (StatusCode, Value) {
    api.call(Method::GET, path, secret, None).await
}

/// `POST /api/v1PATH` with `secret` as the bearer.
async fn post(api: &Api, path: &str, secret: &str, body: Option<Value>) -> (StatusCode, Value) {
    api.call(Method::POST, path, Some(secret), body).await
}

/// `drydock token create NAME --role ROLE EXTRA…`; the token's secret.
async fn token(env: &Env, name: &str, role: &str, extra: &[&str]) -> String {
    let mut args = vec!["token", "create", name, "--role", role, "--json"];
    args.extend_from_slice(extra);
    let made: Value = serde_json::from_str(&env.ok(&args).await).unwrap();
    assert_eq!(made["token"]["role"], role, "{made}");
    made["secret"].as_str().unwrap().to_string()
}

/// The error message of a refused request.
fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

async fn roles_decide_what_the_api_allows(env: Env) {
    let viewer = token(&env, "dashboard", "viewer", &[]).await;
    let ci = token(&env, "ci", "requester", &[]).await;
    let other = token(&env, "other-team", "requester", &[]).await;
    let hosts_only = token(&env, "hosts-only", "requester", &["--type", "host"]).await;
    let taken = env
        .drydock(&["token", "create", "ci", "--role", "viewer"])
        .await;
    let stderr = String::from_utf8_lossy(&taken.stderr);
    assert!(
        !taken.status.success() && stderr.contains("a token named \"ci\" exists"),
        "{stderr}"
    );

    // No worker runs: leases stay as requested, whatever makes them.
    let mut first = env.serve(&["--workers", "0"]);
    let mut second = env.serve(&["--workers", "0", "--public-reads"]);
    let one = Api::new(first.url().await);
    let two = Api::new(second.url().await);

    // Reads need a token; --public-reads opens the objects, never their history.
    let (status, body) = get(&one, "/leases", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(error(&body).contains("Bearer"), "{body}");
    let (status, body) = get(&one, "/leases", Some("ddt_not-a-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(error(&body).contains("not valid"), "{body}");
    assert_eq!(get(&one, "/leases", Some(&viewer)).await.0, StatusCode::OK);
    assert_eq!(get(&two, "/leases", None).await.0, StatusCode::OK);
    for history in ["/logs", "/commands", "/steps?object=L1"] {
        let (status, body) = get(&two, history, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{history}: {body}");
        assert_eq!(get(&two, history, Some(&viewer)).await.0, StatusCode::OK);
    }

    // A viewer reads only; a requester's leases are owned by the token's name.
    let host = json!({"type": "host"});
    let (status, body) = post(&one, "/leases", &viewer, Some(host.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        error(&body),
        "requesting a lease needs the requester role; the token \"dashboard\" is a viewer"
    );
    let (status, body) = post(&one, "/leases", &ci, Some(host.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let lease = body[0]["id"].as_str().unwrap().to_string();
    assert_eq!(body[0]["owner"], "ci", "{body}");
    let (status, body) = post(&one, "/leases", &hosts_only, Some(json!({"type": "vm"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        error(&body),
        "the token \"hosts-only\" may lease \"host\" only, not \"vm\""
    );
    let (status, _) = post(&one, "/leases", &hosts_only, Some(host)).await;
    assert_eq!(status, StatusCode::CREATED);

    // Only its owner (or an operator) releases a lease; only operators touch resources and
    // blueprints.
    let release = format!("/leases/{lease}/release");
    for (secret, role) in [(&viewer, "requester role"), (&other, "operator role")] {
        let (status, body) = post(&two, &release, secret, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(error(&body).contains(role), "{body}");
    }
    let (status, body) = post(&one, "/resources/R1/release", &ci, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        error(&body),
        "releasing a resource needs the operator role; the token \"ci\" is a requester"
    );
    let (status, body) = post(&one, "/blueprints/B1/disable", &ci, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let nothing_queued = env.ok(&["command", "list"]).await;
    assert!(!nothing_queued.contains(&lease), "{nothing_queued}");
    let (status, body) = post(&two, &release, &ci, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["author"], "ci", "{body}");

    // A revoked token is refused by both daemons from the revocation on; the list keeps it,
    // and no secret.
    assert_eq!(get(&one, "/leases", Some(&other)).await.0, StatusCode::OK);
    env.ok(&["token", "revoke", "other-team"]).await;
    for api in [&one, &two] {
        let (status, body) = get(api, "/leases", Some(&other)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(error(&body), "the token \"other-team\" was revoked");
    }
    let listed = env.ok(&["token", "list", "--json"]).await;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let revoked = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "other-team")
        .unwrap();
    assert!(revoked["revoked_at"].is_number(), "{revoked}");
    let text = listed.to_string();
    assert!(!text.contains("ddt_") && !text.contains("secret"), "{text}");
    // The name is free again once revoked; the new token is another secret.
    let again = token(&env, "other-team", "viewer", &[]).await;
    assert_ne!(again, other);
    assert_eq!(get(&two, "/leases", Some(&again)).await.0, StatusCode::OK);

    // A token that expired is refused, saying so.
    let brief = token(&env, "brief", "viewer", &["--expires", "1ms"]).await;
    wait_for("the brief token to expire", || async {
        let (status, body) = get(&one, "/leases", Some(&brief)).await;
        (status == StatusCode::UNAUTHORIZED).then_some(body)
    })
    .await;
    let (_, body) = get(&one, "/leases", Some(&brief)).await;
    assert_eq!(error(&body), "the token \"brief\" expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_decide_what_the_api_allows_on_sqlite() {
    let env = Env::new();
    env.ok(&["migrate"]).await;
    roles_decide_what_the_api_allows(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_decide_what_the_api_allows_on_postgres() {
    let cluster = Cluster::start();
    let env = Env::with_url(cluster.database().await);
    env.ok(&["migrate"]).await;
    roles_decide_what_the_api_allows(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_requests_say_what_was_wrong() {
    let env = Env::new();
    env.ok(&["migrate"]).await;
    for (args, why) in [
        (
            &["token", "create", "has space", "--role", "viewer"][..],
            "cannot name a token",
        ),
        (
            &["token", "create", "x", "--role", "admin"][..],
            "unknown role \"admin\": one of viewer, requester, operator",
        ),
        (
            &["token", "revoke", "nobody"][..],
            "a token named \"nobody\" that is not revoked does not exist",
        ),
    ] {
        let out = env.drydock(args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
}

/// Lines of the daemon's log that contain every one of `words`.
fn logged(daemon: &drydock_tests::Daemon, words: &[&str]) -> usize {
    let lines = daemon.log_lines();
    let matching = lines.iter().filter(|l| words.iter().all(|w| l.contains(w)));
    matching.count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_tokens_is_logged_and_throttled() {
    use drydock_tests::TOKEN;
    let env = Env::new();
    env.ok(&["migrate"]).await;
    let mut daemon = env.serve(&["--workers", "0"]);
    let api = Api::new(daemon.url().await);
    let guess = "ddt_0123456789abcdef0123456789abcdef01234567";
    for _ in 0..10 {
        let (status, body) = get(&api, "/leases", Some(guess)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let response = api
        .client
        .get(format!("{}/api/v1/leases", api.base))
        .bearer_auth(guess)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
    let body: Value = response.json().await.unwrap();
    assert!(error(&body).starts_with("too many failed authentications from 127.0.0.1"));
    // The address is held back whatever it sends now, a good token too.
    assert_eq!(
        get(&api, "/leases", Some(TOKEN)).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A request without a token is no guess: it is answered as before.
    assert_eq!(get(&api, "/leases", None).await.0, StatusCode::UNAUTHORIZED);
    wait_for("the refusals to be logged", || async {
        let refused = [
            "refused an authentication",
            "API: an unknown token",
            "127.0.0.1",
        ];
        (logged(&daemon, &refused) == 10 && logged(&daemon, &["throttled"]) == 2).then_some(())
    })
    .await;
    assert_eq!(logged(&daemon, &[guess]), 0, "a secret was logged");

    // Sign-ins in the web UI: 50 wrong tokens in a row, the first ten refused, the rest held
    // back.
    let mut web = env.serve(&["--workers", "0"]);
    let base = web.url().await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for n in 0..50 {
        let answer = sign_in_answer(&client, &base, &format!("wrong-{n}")).await;
        statuses.push(answer.status());
    }
    let refused = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED);
    let held = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS);
    assert_eq!((refused.count(), held.count()), (10, 40), "{statuses:?}");
    assert!(
        statuses[..10]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED)
    );
    wait_for("the sign-ins to be logged", || async {
        let refused = [
            "refused an authentication",
            "a sign-in with a wrong token",
            "127.0.0.1",
        ];
        (logged(&web, &refused) == 10 && logged(&web, &["throttled"]) == 40).then_some(())
    })
    .await;
    assert_eq!(logged(&web, &["wrong-"]), 0, "a guessed token was logged");
}

/// The web UI's answer to signing in with `secret`.
async fn sign_in_answer(client: &reqwest::Client, base: &str, secret: &str) -> reqwest::Response {
    let form = [("token", secret), ("next", "/")];
    let request = client.post(format!("{base}/signin")).form(&form);
    request.send().await.unwrap()
}

/// Signs in to the web UI with `secret`; the session cookie (`name=value`).
async fn sign_in(client: &reqwest::Client, base: &str, secret: &str) -> String {
    let answer = sign_in_answer(client, base, secret).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER, "signing in");
    let cookie = answer.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

/// A page of the UI, as the session `cookie` sees it.
async fn page(client: &reqwest::Client, url: &str, cookie: &str) -> String {
    let answer = client
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "{url}");
    answer.text().await.unwrap()
}

/// POSTs a form of the UI with the session's CSRF token (read from `page`); the status and
/// the answer's text.
async fn submit(
    client: &reqwest::Client,
    url: &str,
    cookie: &str,
    page: &str,
) -> (StatusCode, String) {
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a signed-in page carries the CSRF token");
    let answer = client
        .post(url)
        .header("cookie", cookie)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    (answer.status(), answer.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_signs_in_with_the_stores_tokens_and_allows_what_the_role_does() {
    use drydock_tests::TOKEN;
    let env = Env::new();
    env.ok(&["migrate"]).await;
    let looker = token(&env, "looker", "viewer", &[]).await;
    let ci = token(&env, "ci", "requester", &[]).await;
    let mut daemon = env.serve(&["--workers", "0"]);
    let api = Api::new(daemon.url().await);
    let host = Some(json!({"type": "host"}));
    let (_, own) = post(&api, "/leases", &ci, host.clone()).await;
    let own = own[0]["id"].as_str().unwrap().to_string();
    let (_, others) = post(&api, "/leases", TOKEN, host).await;
    let others = others[0]["id"].as_str().unwrap().to_string();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = &api.base;

    let cookie = sign_in(&client, base, &ci).await;
    let mine = page(&client, &format!("{base}/leases/{own}"), &cookie).await;
    assert!(mine.contains("Signed in as ci (requester)"), "{mine}");
    assert!(
        mine.contains(&format!("action=\"/leases/{own}/release\"")),
        "{mine}"
    );
    let theirs = page(&client, &format!("{base}/leases/{others}"), &cookie).await;
    assert!(
        !theirs.contains(&format!("action=\"/leases/{others}/release\"")),
        "{theirs}"
    );
    assert!(theirs.contains("needs the operator role"), "{theirs}");
    let (status, answer) = submit(
        &client,
        &format!("{base}/leases/{others}/release"),
        &cookie,
        &theirs,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(answer.contains("needs the operator role"), "{answer}");
    let (status, answer) = submit(
        &client,
        &format!("{base}/blueprints/B1/disable"),
        &cookie,
        &theirs,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(
        answer.contains("changing a blueprint needs the operator role"),
        "{answer}"
    );
    let (status, _) = submit(
        &client,
        &format!("{base}/leases/{own}/release"),
        &cookie,
        &mine,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let commands = env.ok(&["command", "list", "--target", &own]).await;
    assert!(
        commands.contains("ci"),
        "released by the token's name: {commands}"
    );

    let cookie = sign_in(&client, base, &looker).await;
    let seen = page(&client, &format!("{base}/leases/{others}"), &cookie).await;
    assert!(seen.contains("Signed in as looker (viewer)"), "{seen}");
    let (status, answer) = submit(
        &client,
        &format!("{base}/leases/{others}/release"),
        &cookie,
        &seen,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(answer.contains("needs the requester role"), "{answer}");

    env.ok(&["token", "revoke", "looker"]).await;
    let refused = sign_in_answer(&client, base, &looker).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("That token is not valid.")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_ask_to_sign_in_and_public_reads_show_objects_not_their_history() {
    use drydock_tests::TOKEN;
    let env = Env::new();
    env.ok(&["migrate"]).await;
    env.request_one("host", &[]).await;
    let mut closed = env.serve(&["--workers", "0"]);
    let mut open = env.serve(&["--workers", "0", "--public-reads"]);
    let (closed, open) = (closed.url().await, open.url().await);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // By default every page but the sign-in page and its assets sends a visitor to sign in,
    // and the sign-in brings them back.
    for (path, back) in [
        ("/", "%2F"),
        ("/leases/L1", "%2Fleases%2FL1"),
        (
            "/leases?status=pending&limit=3",
            "%2Fleases%3Fstatus%3Dpending%26limit%3D3",
        ),
        ("/blueprints", "%2Fblueprints"),
    ] {
        let answer = client.get(format!("{closed}{path}")).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(
            answer.headers()["location"],
            format!("/signin?next={back}"),
            "{path}"
        );
    }
    let head = client
        .head(format!("{closed}/leases/L1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.status(),
        StatusCode::SEE_OTHER,
        "HEAD asks to sign in too"
    );
    for path in ["/signin", "/assets/style.css", "/assets/live.js"] {
        let answer = client.get(format!("{closed}{path}")).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
    }
    let form = [("token", TOKEN), ("next", "/leases?status=pending&limit=3")];
    let answer = client
        .post(format!("{closed}/signin"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.headers()["location"],
        "/leases?status=pending&limit=3"
    );
    let cookie = sign_in(&client, &closed, TOKEN).await;
    let signed_in = page(&client, &format!("{closed}/leases/L1"), &cookie).await;
    assert!(signed_in.contains("id=\"logs\""), "{signed_in}");
    assert!(signed_in.contains("lease.queued"), "{signed_in}");

    // With --public-reads, anyone sees the objects, and their history only once signed in.
    let answer = client
        .get(format!("{open}/leases/L1"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let public = answer.text().await.unwrap();
    assert!(public.contains("Lease L1"), "{public}");
    assert!(public.contains("id=\"history-hidden\""), "{public}");
    for history in ["id=\"logs\"", "lease.queued", ">Steps<", "Queued commands"] {
        assert!(!public.contains(history), "{history} shown: {public}");
    }
    let console = client.get(format!("{open}/")).send().await.unwrap();
    let console = console.text().await.unwrap();
    assert!(!console.contains("lease.queued"), "{console}");
    let cookie = sign_in(&client, &open, TOKEN).await;
    let signed_in = page(&client, &format!("{open}/leases/L1"), &cookie).await;
    assert!(signed_in.contains("lease.queued"), "{signed_in}");
}

/// Whether the session `cookie` is signed in on the UI at `base`: its console answers, rather
/// than sending it to sign in.
async fn signed_in(client: &reqwest::Client, base: &str, cookie: &str) -> bool {
    let answer = client
        .get(format!("{base}/"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    match answer.status() {
        StatusCode::OK => true,
        StatusCode::SEE_OTHER => false,
        other => panic!("the console answered {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_holds_on_every_daemon_and_ends_on_all_at_once() {
    use drydock_tests::TOKEN;
    let cluster = Cluster::start();
    let env = Env::with_url(cluster.database().await);
    env.ok(&["migrate"]).await;
    let looker = token(&env, "looker", "viewer", &[]).await;
    let lease = env.request_one("host", &[]).await;
    let (mut one, mut two) = (
        env.serve(&["--workers", "0"]),
        env.serve(&["--workers", "0"]),
    );
    let (one, two) = (one.url().await, two.url().await);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Signed in on one daemon, a user is signed in on the other, as the same token, and a
    // form from one daemon's page is accepted by the other (the CSRF token goes with the
    // session, not the daemon).
    let cookie = sign_in(&client, &one, &looker).await;
    let seen = page(&client, &format!("{two}/leases/{lease}"), &cookie).await;
    assert!(seen.contains("Signed in as looker (viewer)"), "{seen}");
    let operator = sign_in(&client, &one, TOKEN).await;
    let form = page(&client, &format!("{one}/leases/{lease}"), &operator).await;
    let release = format!("{two}/leases/{lease}/release");
    // The same length as the real one, one digit changed.
    let real = form.split("name=\"csrf\" value=\"").nth(1).unwrap();
    let real = &real[..real.find('"').unwrap()];
    let first = if real.starts_with('0') { "1" } else { "0" };
    let forged = form.replace(real, &format!("{first}{}", &real[1..]));
    let (status, answer) = submit(&client, &release, &operator, &forged).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a forged CSRF token: {answer}"
    );
    assert!(answer.contains("CSRF check failed"), "{answer}");
    let (status, answer) = submit(&client, &release, &operator, &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{answer}");

    // Signing out on one daemon signs out on both; the other session stays.
    let (status, _) = submit(&client, &format!("{two}/signout"), &operator, &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    for base in [&one, &two] {
        assert!(!signed_in(&client, base, &operator).await, "{base}");
        assert!(signed_in(&client, base, &cookie).await, "{base}");
    }

    // Revoking the token ends its sessions on every daemon at once.
    let again = sign_in(&client, &two, &looker).await;
    env.ok(&["token", "revoke", "looker"]).await;
    for base in [&one, &two] {
        for session in [&cookie, &again] {
            assert!(!signed_in(&client, base, session).await, "{base}");
        }
    }
    // A made-up session is no session.
    let made_up = "drydock_session=0123456789abcdef0123456789abcdef";
    assert!(!signed_in(&client, &one, made_up).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_keeps_nothing_that_signs_in_and_holds_only_where_its_token_does() {
    use drydock_tests::TOKEN;
    let env = Env::new();
    env.ok(&["migrate"]).await;
    let mut ours = env.serve(&["--workers", "0"]);
    let other_token = "another-operator-token-0123";
    let mut theirs = env.serve_with_env(&["--workers", "0"], &[("DRYDOCK_TOKEN", other_token)]);
    let (ours, theirs) = (ours.url().await, theirs.url().await);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Signed in with this daemon's operator token: the other daemon, which does not hold that
    // token, does not honour the session.
    let cookie = sign_in(&client, &ours, TOKEN).await;
    assert!(signed_in(&client, &ours, &cookie).await);
    assert!(!signed_in(&client, &theirs, &cookie).await);

    // The database holds hashes that neither sign in nor name the token.
    let secret = cookie.split_once('=').unwrap().1;
    let sha = |text: &str| drydock_host::access::secret_hash(text);
    let db = drydock_tests::sqlite(&env.url);
    let rows: Vec<(String, String, Option<i64>)> = db
        .prepare("SELECT id_hash, token_sealed, token_id FROM session")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (id_hash, sealed, token_id) = &rows[0];
    assert_eq!(id_hash, &sha(secret));
    assert_ne!(sealed, &sha(TOKEN), "the token's hash is kept masked");
    assert!(!sealed.contains(secret) && !id_hash.contains(secret));
    assert_eq!(
        *token_id, None,
        "an operator token is none of the database's"
    );

    // Signing in again ends the session the browser held.
    let again = client
        .post(format!("{ours}/signin"))
        .header("cookie", &cookie)
        .form(&[("token", TOKEN), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert!(
        !signed_in(&client, &ours, &cookie).await,
        "the old session ended"
    );

    // A form sent from another site is refused, a sign-in too (a visitor signed in as the
    // attacker would act as them).
    for site in ["cross-site", "same-site"] {
        let answer = client
            .post(format!("{ours}/signin"))
            .header("sec-fetch-site", site)
            .form(&[("token", TOKEN), ("next", "/")])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{site}");
        assert!(answer.text().await.unwrap().contains("another site"));
    }
    let answer = client
        .post(format!("{ours}/signin"))
        .header("sec-fetch-site", "same-origin")
        .header("x-forwarded-proto", "https")
        .form(&[("token", TOKEN), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER, "from our own page");
    let set = answer.headers()["set-cookie"].to_str().unwrap();
    assert!(set.contains("; Secure"), "behind an HTTPS proxy: {set}");
}
