//! `/api/v1/session`: the web dashboard's login. A token is checked once and
//! kept by the browser in an HttpOnly, SameSite=Strict cookie, so that plain
//! links can download files (streamed by the browser, not held in a page).
//! Requests that change something with the cookie must also carry
//! [`CHANGE_HEADER`], which a page of another site cannot add.

use super::{authorize, role_name, tokens, ApiError, ApiResult, Shared};
use crate::format::TokenRole;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

/// The cookie holding the dashboard's token.
pub const COOKIE: &str = "cloudraid_token";
/// The header a change made with the cookie needs (any value).
pub const CHANGE_HEADER: &str = "x-requested-with";

/// The token in the request's `Cookie` header, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[derive(Deserialize)]
pub struct Login {
    token: String,
}

fn who(t: &tokens::TokenInfo) -> serde_json::Value {
    serde_json::json!({"name": t.name, "role": role_name(t.role)})
}

/// `POST /api/v1/session` `{"token": "crd_..."}`: checks the token and sets
/// the cookie; answers who it is (`{"name", "role"}`).
pub async fn login(State(api): Shared, body: axum::body::Bytes) -> ApiResult<Response> {
    let l: Login = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not {{\"token\": ...}}: {e}")))?;
    let secret = l.token.trim().to_string();
    let t = super::known_token(&api, secret.clone()).await?;
    let cookie = format!("{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict");
    let mut r = Json(who(&t)).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| ApiError::bad_request("a token is ASCII"))?,
    );
    Ok(r)
}

/// `GET /api/v1/session`: who the request's token is.
pub async fn whoami(State(api): Shared, headers: HeaderMap) -> ApiResult<Json<serde_json::Value>> {
    let t = authorize(&api, &headers, TokenRole::Read).await?;
    Ok(Json(who(&t)))
}

/// `DELETE /api/v1/session`: forgets the cookie.
pub async fn logout() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("cloudraid_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}
