//! The token endpoint, the list of environments a token may use, and the
//! OpenAPI document.

use bytes::Bytes;
use http::{StatusCode, header};

use crate::http::{ResponseBody, full_body, json_response, query_param};

use super::wire::{Environment, EnvironmentList, TokenResponse};
use super::{Api, ApiError, ApiResult, Call};

/// The OpenAPI 3 document of the REST and Stats APIs; a test checks it
/// against the route table and the real answers.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The largest token request read: a few short fields.
const MAX_TOKEN_REQUEST: usize = 64 << 10;

pub(super) fn openapi() -> hyper::Response<ResponseBody> {
    hyper::Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(full_body(Bytes::from_static(OPENAPI.as_bytes())))
        .expect("a valid response")
}

/// The fields of a token request, from a form or a JSON object; a missing
/// or non-text field is named.
fn token_field(body: &[u8], is_form: bool, name: &str) -> Result<String, ApiError> {
    let value = if is_form {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the form is not UTF-8"))?;
        match query_param(Some(text), name) {
            Some(Some(value)) => Some(value),
            Some(None) => {
                return Err(ApiError::bad_request(format!(
                    "query parameter {name} is not valid UTF-8"
                )));
            }
            None => None,
        }
    } else {
        let json: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
        json.get(name)
            .and_then(serde_json::Value::as_str)
            .map(String::from)
    };
    value.ok_or_else(|| ApiError::bad_request(format!("missing {name}")))
}

impl Api {
    /// `POST /accounts/api/v2/oauth2/token` with `client_id`,
    /// `client_secret` and `grant_type=client_credentials`, as JSON or as a
    /// form.
    pub(super) async fn token(&self, mut call: Call) -> ApiResult {
        let is_form = call
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let body = call.body(MAX_TOKEN_REQUEST).await?;
        let field = |name| token_field(&body, is_form, name);
        let grant_type = field("grant_type")?;
        if grant_type != "client_credentials" {
            return Err(ApiError::bad_request(format!(
                "unsupported grant_type {grant_type:?}; use client_credentials"
            )));
        }
        let issued = self
            .credentials
            .issue_token(&field("client_id")?, &field("client_secret")?)
            .await?;
        let scopes: Vec<&str> = issued.scopes.iter().map(|s| s.as_str()).collect();
        Ok(json_response(
            StatusCode::OK,
            &TokenResponse {
                access_token: issued.token,
                token_type: "bearer".into(),
                expires_in: issued.lifetime.as_secs(),
                scope: scopes.join(" "),
            },
        ))
    }

    /// `GET /api/v1/environments`: the environments (one per application)
    /// that the token's credential may use, in name order.
    pub(super) fn list_environments(&self, call: &Call) -> ApiResult {
        let values = self
            .environments
            .visible_to(&call.grant().principal)
            .into_iter()
            .map(|(org, env, app)| Environment {
                organization_id: org.into(),
                environment_id: env.into(),
                application_name: app.into(),
            })
            .collect();
        Ok(json_response(StatusCode::OK, &EnvironmentList { values }))
    }
}
