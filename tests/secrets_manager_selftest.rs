//! The local Secrets Manager (tests/support/secrets_manager) on the wire, with reqwest:
//! that it refuses what the real service refuses (docs/secrets-manager.md), so the tests
//! that run fulfill against it prove something.

mod support;

use fulfill_test_pki as pki;

use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};
use support::secrets_manager::{API_KEY, Fault, LocalSecretsManager, Route};

const GRANT: &str = "urn:ibm:params:oauth:grant-type:apikey";

fn token(client: &Client, sm: &LocalSecretsManager, key: &str) -> (u16, Value) {
    let response = client
        .post(sm.iam_endpoint())
        .form(&[("grant_type", GRANT), ("apikey", key)])
        .send()
        .unwrap();
    (response.status().as_u16(), response.json().unwrap())
}

fn call(
    client: &Client,
    sm: &LocalSecretsManager,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client
        .request(method, format!("{}{path}", sm.url()))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().unwrap();
    (
        response.status().as_u16(),
        response.json().unwrap_or(Value::Null),
    )
}

/// A certificate for `name` and its key, PEM.
fn certificate(name: &str) -> (String, String) {
    let root = pki::root("Selftest Root");
    let leaf = pki::leaf(&pki::LeafSpec::new(&[name]), &root);
    (leaf.pem.clone(), leaf.key_pem())
}

fn new_secret(name: &str, certificate: &str, key: &str) -> Value {
    json!({"secret_type": "imported_cert", "name": name, "secret_group_id": "default",
           "certificate": certificate, "private_key": key})
}

#[test]
fn iam_issues_tokens_for_known_keys_only() {
    let sm = LocalSecretsManager::start();
    let client = Client::new();
    let (status, body) = token(&client, &sm, "nope");
    assert_eq!(status, 400);
    assert_eq!(body["errorCode"], "BXNIM0415E");
    let (status, body) = token(&client, &sm, API_KEY);
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    // JSON instead of a form is refused.
    let response = client
        .post(sm.iam_endpoint())
        .json(&json!({"grant_type": GRANT, "apikey": API_KEY}))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
}

#[test]
fn the_api_wants_a_live_bearer_token() {
    let sm = LocalSecretsManager::start();
    let client = Client::new();
    let get = reqwest::Method::GET;
    let (status, body) = call(
        &client,
        &sm,
        get.clone(),
        "/api/v2/secrets",
        "made-up",
        None,
    );
    assert_eq!(status, 401);
    assert_eq!(body["status_code"], 401);
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    sm.set_token_life(Duration::from_millis(300));
    let access = token(&client, &sm, API_KEY).1["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        call(&client, &sm, get.clone(), "/api/v2/secrets", &access, None).0,
        200
    );
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        call(&client, &sm, get.clone(), "/api/v2/secrets", &access, None).0,
        401
    );
    // A fault expires every token at once.
    sm.set_token_life(Duration::from_secs(3600));
    let access = token(&client, &sm, API_KEY).1["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    sm.inject(Route::List, Fault::ExpireTokens, 1);
    assert_eq!(
        call(&client, &sm, get, "/api/v2/secrets", &access, None).0,
        401
    );
}

#[test]
fn imports_are_checked_names_are_unique_and_versions_add_up() {
    let sm = LocalSecretsManager::start();
    let client = Client::new();
    let access = token(&client, &sm, API_KEY).1["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let post = reqwest::Method::POST;
    let (cert, key) = certificate("a.example.com");
    let (other_cert, other_key) = certificate("b.example.com");
    // A key that is not the certificate's.
    let (status, _) = call(
        &client,
        &sm,
        post.clone(),
        "/api/v2/secrets",
        &access,
        Some(new_secret("a.example.com", &cert, &other_key)),
    );
    assert_eq!(status, 400);
    let (status, created) = call(
        &client,
        &sm,
        post.clone(),
        "/api/v2/secrets",
        &access,
        Some(new_secret("a.example.com", &cert, &key)),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["versions_total"], 1);
    let (status, body) = call(
        &client,
        &sm,
        post.clone(),
        "/api/v2/secrets",
        &access,
        Some(new_secret("a.example.com", &cert, &key)),
    );
    assert_eq!(status, 409, "{body}");
    let id = created["id"].as_str().unwrap();
    let version = json!({"certificate": other_cert, "private_key": other_key});
    let (status, body) = call(
        &client,
        &sm,
        post,
        &format!("/api/v2/secrets/{id}/versions"),
        &access,
        Some(version),
    );
    assert_eq!(status, 201, "{body}");
    let (status, secret) = call(
        &client,
        &sm,
        reqwest::Method::GET,
        &format!("/api/v2/secrets/{id}"),
        &access,
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(secret["versions_total"], 2);
    assert_eq!(
        secret["certificate"],
        other_cert.as_str(),
        "the current version's"
    );
    assert_eq!(sm.versions("a.example.com").len(), 2);

    // §4a: the versions by alias and by id, metadata only.
    let version_id = body["id"].as_str().unwrap();
    assert_eq!(body["alias"], "current", "{body}");
    let metadata = |version: &str| {
        call(
            &client,
            &sm,
            reqwest::Method::GET,
            &format!("/api/v2/secrets/{id}/versions/{version}/metadata"),
            &access,
            None,
        )
    };
    let (status, current) = metadata("current");
    assert_eq!(status, 200, "{current}");
    assert_eq!(current["id"], version_id);
    assert_eq!(current["secret_id"], id);
    assert!(current.get("private_key").is_none() && current.get("certificate").is_none());
    let (_, previous) = metadata("previous");
    assert_eq!(previous["alias"], "previous");
    assert_eq!(previous["id"], sm.secrets()[0].versions[0].id.as_str());
    assert_eq!(metadata(version_id).1["alias"], "current");
    assert_eq!(metadata("no-such-version").0, 404);
}

#[test]
fn the_list_searches_filters_by_group_and_pages() {
    let sm = LocalSecretsManager::start();
    sm.add_group("team-b");
    let client = Client::new();
    let access = token(&client, &sm, API_KEY).1["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    for (name, group) in [
        ("a.example.com", "default"),
        ("ab.example.com", "default"),
        ("a.example.com", "team-b"),
    ] {
        let (cert, key) = certificate(name);
        let mut body = new_secret(name, &cert, &key);
        body["secret_group_id"] = json!(group);
        assert_eq!(
            call(
                &client,
                &sm,
                reqwest::Method::POST,
                "/api/v2/secrets",
                &access,
                Some(body)
            )
            .0,
            201
        );
    }
    let list = |query: &str| {
        call(
            &client,
            &sm,
            reqwest::Method::GET,
            &format!("/api/v2/secrets?{query}"),
            &access,
            None,
        )
    };
    let (_, all) = list("search=a.example&groups=default");
    assert_eq!(all["total_count"], 1);
    let (_, all) = list("search=example&groups=default&limit=1&offset=1");
    assert_eq!(all["total_count"], 2);
    assert_eq!(all["secrets"].as_array().unwrap().len(), 1);
    assert_eq!(list("limit=0").0, 400);
    sm.inject(Route::List, Fault::StaleList, 1);
    assert_eq!(list("search=example").1["total_count"], 0);
}
