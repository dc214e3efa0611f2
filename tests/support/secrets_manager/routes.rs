//! What each request of the local Secrets Manager means: the IAM token (§2), the list
//! (§5), one secret with its current certificate (§6), a new imported certificate (§3), a
//! new version (§4); errors in the API's shape (§7). A queued fault comes first.

use std::time::Instant;

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::super::portal::http::{HttpRequest, HttpResponse, Outcome};
use super::super::portal::judge::check_certificate;
use super::{Fault, Route, State, StoredSecret, Version};

/// §2: the grant for an API key.
const GRANT_TYPE: &str = "urn:ibm:params:oauth:grant-type:apikey";

/// The v2 error body (§7). CHOICE: the codes are made up; the shape is the documented one.
pub(crate) fn error(status: u16, code: &str, message: &str) -> HttpResponse {
    HttpResponse::json(
        status,
        &json!({
            "errors": [{"code": code, "message": message, "more_info": "https://cloud.ibm.com/apidocs/secrets-manager/secrets-manager-v2"}],
            "trace": "3a9c5e52-5c6f-4d1d-9e1f-test-trace",
            "status_code": status,
        }),
    )
}

pub(crate) fn handle(state: &mut State, request: &HttpRequest) -> Outcome {
    let (path, query) = match request.target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (request.target.as_str(), ""),
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let route = match (request.method.as_str(), segments.as_slice()) {
        ("POST", ["identity", "token"]) => Route::Token,
        ("GET", ["api", "v2", "secrets"]) => Route::List,
        ("POST", ["api", "v2", "secrets"]) => Route::Create,
        ("GET", ["api", "v2", "secrets", _]) => Route::Get,
        ("POST", ["api", "v2", "secrets", _, "versions"]) => Route::Version,
        ("GET", ["api", "v2", "secrets", _, "versions", _, "metadata"]) => Route::VersionMetadata,
        _ => {
            return respond(error(
                404,
                "not_found",
                &format!("No route for {} {path}", request.method),
            ));
        }
    };
    let fault = state.faults.get_mut(&route).and_then(|q| q.pop_front());
    match fault {
        Some(Fault::InternalError) => {
            return respond(error(500, "internal_server_error", "Internal server error"));
        }
        Some(Fault::ExpireTokens) => {
            let now = Instant::now();
            state.tokens.values_mut().for_each(|expiry| *expiry = now);
        }
        _ => {}
    }
    if route != Route::Token && !authorized(state, request) {
        return respond(error(
            401,
            "unauthorized",
            "The bearer token is missing, invalid or expired.",
        ));
    }
    let id = segments.get(3).copied().unwrap_or_default();
    let response = match (route, &fault) {
        (Route::List, Some(Fault::StaleList)) => list(&[], query),
        (Route::Token, _) => token(state, request),
        (Route::List, _) => list(&state.secrets, query),
        (Route::Get, _) => get(state, id),
        (Route::Create, _) => create(state, &request.body),
        (Route::Version, _) => version(state, id, &request.body),
        (Route::VersionMetadata, _) => version_metadata(state, id, segments[5]),
    };
    match fault {
        Some(Fault::LostResponse) => Outcome::Drop,
        Some(Fault::HoldAnswer(delay)) => Outcome::DelayThenRespond(delay, response),
        _ => respond(response),
    }
}

fn respond(response: HttpResponse) -> Outcome {
    Outcome::Respond(response)
}

fn authorized(state: &State, request: &HttpRequest) -> bool {
    let Some(token) = request
        .header("Authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return false;
    };
    state
        .tokens
        .get(token)
        .is_some_and(|expiry| Instant::now() < *expiry)
}

/// §2: a form with grant_type and apikey; the answer carries `access_token` and
/// `expires_in`. CHOICE: an unknown key is 400 with IAM's BXNIM0415E body.
fn token(state: &mut State, request: &HttpRequest) -> HttpResponse {
    let form_type = request.header("Content-Type").unwrap_or_default();
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        return iam_error(400, "BXNIM0109E", "Property missing or empty: grant_type");
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(&request.body).into_owned().collect();
    let value = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if value("grant_type") != Some(GRANT_TYPE) {
        return iam_error(400, "BXNIM0109E", "Property missing or empty: grant_type");
    }
    if !value("apikey").is_some_and(|key| state.api_keys.iter().any(|k| k == key)) {
        return iam_error(400, "BXNIM0415E", "Provided API key could not be found.");
    }
    let token = format!(
        "sm-access-token-{}-{:x}",
        state.next_id,
        rand::random::<u64>()
    );
    state.next_id += 1;
    let life = state.token_life;
    state.tokens.insert(token.clone(), Instant::now() + life);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    HttpResponse::json(
        200,
        &json!({
            "access_token": token,
            "refresh_token": "not_supported",
            "token_type": "Bearer",
            "expires_in": life.as_secs(),
            "expiration": now + i64::try_from(life.as_secs()).unwrap_or(0),
            "scope": "ibm openid",
        }),
    )
}

fn iam_error(status: u16, code: &str, message: &str) -> HttpResponse {
    HttpResponse::json(
        status,
        &json!({"errorCode": code, "errorMessage": message, "context": {"requestId": "test"}}),
    )
}

fn metadata(secret: &StoredSecret) -> Value {
    json!({
        "id": secret.id,
        "name": secret.name,
        "secret_type": "imported_cert",
        "secret_group_id": secret.secret_group_id,
        "labels": secret.labels,
        "custom_metadata": secret.custom_metadata,
        "versions_total": secret.versions.len(),
        "state": 1,
        "state_description": "active",
        "created_by": "iam-ServiceId-test",
    })
}

/// §5: `search` matches names (and labels) containing it; `groups` and `secret_types`
/// are comma lists; `limit` (CHOICE: 1 to 1000, default 200) and `offset` page.
fn list(secrets: &[StoredSecret], query: &str) -> HttpResponse {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let value = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let number =
        |name: &str, default: usize| value(name).map_or(Ok(default), |v| v.parse::<usize>());
    let (Ok(limit), Ok(offset)) = (number("limit", 200), number("offset", 0)) else {
        return error(400, "bad_request", "limit and offset must be numbers");
    };
    if !(1..=1000).contains(&limit) {
        return error(400, "bad_request", "limit must be between 1 and 1000");
    }
    let within =
        |list: Option<String>, item: &str| list.is_none_or(|l| l.split(',').any(|x| x == item));
    let search = value("search").unwrap_or_default().to_lowercase();
    let matching: Vec<Value> = (secrets.iter())
        .filter(|s| {
            s.name.to_lowercase().contains(&search)
                || s.labels.iter().any(|l| l.to_lowercase().contains(&search))
        })
        .filter(|s| within(value("groups"), &s.secret_group_id))
        .filter(|_| within(value("secret_types"), "imported_cert"))
        .map(metadata)
        .collect();
    let page: Vec<Value> = matching.iter().skip(offset).take(limit).cloned().collect();
    HttpResponse::json(
        200,
        &json!({"secrets": page, "total_count": matching.len(), "limit": limit, "offset": offset}),
    )
}

/// §6: the secret with its current version's certificate, chain and key.
fn get(state: &State, id: &str) -> HttpResponse {
    let Some(secret) = state.secrets.iter().find(|s| s.id == id) else {
        return error(404, "not_found", &format!("Secret {id} not found"));
    };
    let mut answer = metadata(secret);
    if let Some(current) = secret.versions.last() {
        answer["certificate"] = json!(current.certificate);
        answer["intermediate"] = json!(current.intermediate);
        answer["private_key"] = json!(current.private_key);
    }
    HttpResponse::json(200, &answer)
}

/// A version's data, checked as the real service checks an import: the certificate
/// parses, the key is its key, the intermediate signed it. CHOICE: the key is required
/// (fulfill always sends it).
fn checked_version(state: &mut State, body: &Value) -> Result<Version, HttpResponse> {
    let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
    let (Some(certificate), Some(private_key)) = (text("certificate"), text("private_key")) else {
        return Err(error(
            400,
            "bad_request",
            "certificate and private_key are required",
        ));
    };
    let intermediate = text("intermediate");
    let checked = check_certificate(&certificate, &private_key, intermediate.as_deref(), None)
        .map_err(|e| error(400, "bad_request", &e.message))?;
    let id = format!(
        "{:08x}-0000-4000-8000-{:012x}",
        state.next_id, state.next_id
    );
    state.next_id += 1;
    Ok(Version {
        id,
        certificate,
        intermediate,
        private_key,
        sha256: checked.sha256,
    })
}

/// A valid name, in a group that exists, not taken there (409).
fn free_name(state: &State, name: &str, group: &str) -> Result<(), HttpResponse> {
    // CHOICE: names of letters, digits, '.', '-' and '_', 2 to 256 characters.
    let valid = (2..=256).contains(&name.len())
        && (name.chars()).all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid {
        return Err(error(
            400,
            "bad_request",
            &format!("Invalid secret name '{name}'"),
        ));
    }
    if !state.groups.iter().any(|g| g == group) {
        return Err(error(
            404,
            "not_found",
            &format!("Secret group {group} not found"),
        ));
    }
    if (state.secrets.iter()).any(|s| s.name == name && s.secret_group_id == group) {
        let message = format!("A secret with the name {name} already exists in the group");
        return Err(error(409, "conflict", &message));
    }
    Ok(())
}

/// §3: a new imported certificate; a name taken in the group is 409.
fn create(state: &mut State, body: &[u8]) -> HttpResponse {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return error(400, "bad_request", "The body is not JSON");
    };
    let text = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if text("secret_type") != "imported_cert" {
        return error(400, "bad_request", "secret_type must be imported_cert here");
    }
    let (name, group) = (text("name"), text("secret_group_id"));
    if let Err(refused) = free_name(state, &name, &group) {
        return refused;
    }
    let version = match checked_version(state, &body) {
        Ok(version) => version,
        Err(response) => return response,
    };
    let secret = StoredSecret {
        id: format!(
            "{:08x}-1111-4111-8111-{:012x}",
            state.next_id, state.next_id
        ),
        name,
        secret_group_id: group,
        labels: (body
            .get("labels")
            .and_then(Value::as_array)
            .into_iter()
            .flatten())
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect(),
        custom_metadata: body.get("custom_metadata").cloned().unwrap_or(json!({})),
        versions: vec![version],
    };
    state.next_id += 1;
    let answer = metadata(&secret);
    state.secrets.push(secret);
    HttpResponse::json(201, &answer)
}

/// §4: a new version of secret `id`.
fn version(state: &mut State, id: &str, body: &[u8]) -> HttpResponse {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return error(400, "bad_request", "The body is not JSON");
    };
    let Some(index) = state.secrets.iter().position(|s| s.id == id) else {
        return error(404, "not_found", &format!("Secret {id} not found"));
    };
    let version = match checked_version(state, &body) {
        Ok(version) => version,
        Err(response) => return response,
    };
    // §4: the answer is the new version, its data included.
    let secret = &state.secrets[index];
    let mut answer = version_json(secret, &version, "current");
    answer["certificate"] = json!(version.certificate);
    answer["intermediate"] = json!(version.intermediate);
    answer["private_key"] = json!(version.private_key);
    state.secrets[index].versions.push(version);
    HttpResponse::json(201, &answer)
}

/// A version's metadata (§4a); `alias` is "current" for the last version, "previous" for
/// the one before, else absent.
fn version_json(secret: &StoredSecret, version: &Version, alias: &str) -> Value {
    let mut answer = json!({
        "id": version.id,
        "secret_id": secret.id,
        "secret_name": secret.name,
        "secret_type": "imported_cert",
        "secret_group_id": secret.secret_group_id,
        "payload_available": true,
        "downloaded": false,
        "created_by": "iam-ServiceId-test",
    });
    if !alias.is_empty() {
        answer["alias"] = json!(alias);
    }
    answer
}

/// §4a: `GET /api/v2/secrets/{id}/versions/{version}/metadata`, the version by its id or
/// by the alias `current` or `previous`; metadata only, no certificate or key.
fn version_metadata(state: &State, id: &str, wanted: &str) -> HttpResponse {
    let Some(secret) = state.secrets.iter().find(|s| s.id == id) else {
        return error(404, "not_found", &format!("Secret {id} not found"));
    };
    let count = secret.versions.len();
    let alias = |index: usize| match count - index {
        1 => "current",
        2 => "previous",
        _ => "",
    };
    let found = match wanted {
        "current" => count.checked_sub(1),
        "previous" => count.checked_sub(2),
        _ => secret.versions.iter().position(|v| v.id == wanted),
    };
    match found {
        Some(index) => HttpResponse::json(
            200,
            &version_json(secret, &secret.versions[index], alias(index)),
        ),
        None => error(
            404,
            "not_found",
            &format!("Version {wanted} of secret {id} not found"),
        ),
    }
}
